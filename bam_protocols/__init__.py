"""
bam_protocols: evaluation protocols beside bam_minimal.py's leave-one-out, registered into
bam_minimal.PROTOCOLS so that the reference's own training loop runs under them.

  comirec    ComiRec's (Cen et al., KDD '20), REMI's too: users split 80/10/10, a user's last 20% as targets,
             Recall / NDCG / HitRate at 10, 20, 50 (`--protocol comirec`; docs/protocols.md)
"""

"""
bam_protocols: the evaluation protocols, one object each (a Protocol, bam_protocols/protocol.py), registered
once, when this package is imported:

  loo        leave-one-out ([KDD24], the default): bam_minimal.py's own rules, pointed to (bam_protocols/loo.py)
  comirec    ComiRec's (Cen et al., KDD '20), REMI's too: users split 80/10/10, a user's last 20% as targets,
             Recall / NDCG / HitRate at 10, 20, 50, the published NDCGs on request (`--protocol comirec`;
             docs/protocols.md). Its code is bam_protocols/comirec_split.py (ComiRecSplit): "comirec" alone, in
             code, is the model (ComiRecSA); the registered name keeps the value runs record

    import bam_protocols
    protocol = bam_protocols.get(cfg.protocol)      # InputError naming the registered ones
    protocol.evaluate(scorer, data, "test", cfg)     # -> (metrics, ranks, top-k lists)
    bam_protocols.register(MyProtocol())             # a new one: cli.py train, evaluate, compare, table run it

Nothing outside this package compares a protocol's name: the layers above ask the object
(tests/test_protocol_object.py).
"""
import bam_minimal as bm
from bam_evidence import metrics as formulas
from bam_protocols import comirec_split, loo
from bam_protocols.protocol import Protocol

PROTOCOLS = {}   # name -> Protocol


def register(protocol):
    """Add `protocol` under its name: here; its users, sampler and evaluator to bam_minimal.PROTOCOLS, so that the
    reference's own loop trains and tests under it; its columns to bam_evidence's, for the kept evidence's report
    and the tuning studies. -> protocol."""
    PROTOCOLS[protocol.name] = protocol
    bm.PROTOCOLS[protocol.name] = dict(users=protocol.users, batch=protocol.batch, evaluate=protocol.evaluate)
    formulas.PROTOCOL_COLUMNS.setdefault(protocol.name, tuple(protocol.columns))
    return protocol


def unregister(name):
    """Take `name` out of every registry that register filled (a test's own protocol, once the test is done)."""
    for registry in (PROTOCOLS, bm.PROTOCOLS, formulas.PROTOCOL_COLUMNS):
        registry.pop(name, None)


def get(name):
    """The protocol registered as `name`; one line naming the registered ones when there is none."""
    if name not in PROTOCOLS:
        raise bm.InputError(f"protocol={name} is not one of {', '.join(PROTOCOLS)} (fix: one of those, or register "
                            "yours with bam_protocols.register before the command runs)")
    return PROTOCOLS[name]


def with_variants():
    """The names of the protocols whose tables have published NDCGs (`--ndcg-as`)."""
    return [p.name for p in PROTOCOLS.values() if p.variants]


for _builtin in (loo.PROTOCOL, comirec_split.PROTOCOL):
    register(_builtin)

__all__ = ["PROTOCOLS", "Protocol", "get", "register", "unregister", "with_variants"]

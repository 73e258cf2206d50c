"""
bam_data/synth.py: the built-in synthetic dataset, sequences with planted multiple interests.

Items fall into topics, with Zipf popularity inside each topic and across topics. Every user
follows 1 to 4 topics with Dirichlet weights, and a sequence interleaves them: it stays on the current topic with
probability `stickiness`, else it jumps to a topic drawn by the user's weights. A user never repeats
an item. Deterministic given the seed. numpy only (bam_numpy uses it too, without torch).

    python cli.py data synth --out synth.txt     # writes synth.txt and synth.truth.json
"""
import json
import os
from dataclasses import asdict, dataclass

import numpy as np

from bam_data.files import atomic_text


@dataclass
class SynthConfig:
    users: int = 2000
    items: int = 1000
    topics: int = 20
    max_topics: int = 4       # each user follows 1..max_topics topics
    mean_len: int = 30        # sequence length ~ 5 + Poisson(mean_len - 5), capped at 3 * mean_len
    stickiness: float = 0.7   # chance that the next item stays on the current topic
    zipf: float = 1.0         # popularity exponent inside a topic
    topic_zipf: float = 0.8   # popularity exponent of the topics themselves
    seed: int = 0


def generate(cfg=SynthConfig()):
    """Returns ({user: [items]}, truth). Users and items are 1-indexed; truth holds the topics."""
    rng = np.random.default_rng(cfg.seed)
    item_topic = rng.permutation(np.arange(cfg.items) % cfg.topics)           # (I,) topic of item id - 1
    members = [np.flatnonzero(item_topic == t) + 1 for t in range(cfg.topics)]
    popularity = [rng.permutation(1.0 / np.arange(1, len(m) + 1) ** cfg.zipf) for m in members]
    popularity = [p / p.sum() for p in popularity]
    topic_weight = rng.permutation(1.0 / np.arange(1, cfg.topics + 1) ** cfg.topic_zipf)
    topic_weight /= topic_weight.sum()
    seqs, user_topics = {}, {}
    for user in range(1, cfg.users + 1):
        # at most every topic: `data synth --topics 3` crashed here with max_topics 4 (tests/test_evidence.py)
        topics = rng.choice(cfg.topics, rng.integers(1, min(cfg.max_topics, cfg.topics) + 1), replace=False,
                            p=topic_weight)
        weights = rng.dirichlet(np.ones(len(topics)))
        length = int(min(5 + rng.poisson(cfg.mean_len - 5), 3 * cfg.mean_len))
        seen, seq, t = set(), [], rng.choice(len(topics), p=weights)
        while len(seq) < length:
            if rng.random() > cfg.stickiness:
                t = rng.choice(len(topics), p=weights)
            pool, p = members[topics[t]], popularity[topics[t]]
            item = int(pool[rng.choice(len(pool), p=p)])
            if item in seen:  # a user never repeats an item; a full topic ends the sequence
                if len(seen.intersection(pool.tolist())) == len(pool):
                    break
                continue
            seen.add(item)
            seq.append(item)
        seqs[user] = seq
        user_topics[user] = [int(x) for x in topics]
    truth = dict(config=asdict(cfg), item_topic=[int(x) for x in item_topic], user_topics=user_topics)
    return seqs, truth


def write(seqs, truth, path):
    """The official format (`user item` per line, each user's lines together, in time order), the ground
    truth beside it as PATH.truth.json, and each item's planted topic as its category in
    PATH.categories.txt (for Diversity@N: bam_data.categories). All are written atomically."""
    from bam_data.categories import write_categories
    lines = "".join(f"{u} {i}\n" for u, s in seqs.items() for i in s)
    stem = os.path.splitext(path)[0]
    atomic_text(path, lines)
    atomic_text(stem + ".truth.json", json.dumps(truth))
    write_categories(stem + ".categories.txt", {i + 1: f"topic{t}" for i, t in enumerate(truth["item_topic"])})
    return stem + ".truth.json"

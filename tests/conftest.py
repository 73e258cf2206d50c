"""Shared test helpers: where the real datasets are, and small synthetic data."""
import os

# pytest.ini runs the suite in 2 processes (pytest-xdist): one thread each keeps them from spinning against
# each other on a 2-core machine (set before torch is imported; subprocesses the tests start inherit it).
if os.environ.get("PYTEST_XDIST_WORKER"):
    os.environ["OMP_NUM_THREADS"] = "1"
from pathlib import Path

import pytest
from hypothesis import HealthCheck, settings

# Property-based tests (tests/test_fuzz.py and the others that use hypothesis). `ci`, the default, keeps the
# suite within its time (200 examples a test, about 1 s each in test_fuzz.py) and is derandomized: every run
# tries the same inputs, so a test passes or fails alike on every clean checkout, and no example database is
# written into it. `python -m pytest --hypothesis-profile=thorough` searches 20x longer with fresh random
# inputs and keeps what fails in .hypothesis/ (git-ignored); a crash it finds becomes an @example.
settings.register_profile("ci", max_examples=200, deadline=None, database=None, derandomize=True, print_blob=True,
                          suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])
settings.register_profile("thorough", max_examples=3000, deadline=None, print_blob=True,
                          suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])
settings.load_profile("ci")

ROOT = Path(__file__).resolve().parents[1]
SHARED = ROOT.parent / "shared" / "data"


def shared(relative):
    """A file under ../shared/data, or a clean skip where that folder is absent (outside CI)."""
    path = SHARED / relative
    if not path.exists():
        pytest.skip(f"{path} is absent (the real datasets live in ../shared/data)")
    return path


@pytest.fixture
def good(tmp_path):
    """A valid official-format file, 30 users (test_cli, test_trust, test_fingerprint)."""
    path = tmp_path / "good.txt"
    path.write_text("".join(f"{u} {1 + (u * 7 + j) % 40}\n" for u in range(1, 31) for j in range(6)))
    return path


@pytest.fixture(scope="session")
def synthetic_small():
    """A small planted-topic dataset as {user: [items]}; fast enough for training tests."""
    from bam_data.synth import SynthConfig, generate
    seqs, truth = generate(SynthConfig(users=800, items=300, topics=10, mean_len=20, seed=1))
    return seqs, truth


def bam_numpy_main(argv, monkeypatch):
    """The (Config, Dataset) that `python -m bam_numpy ARGV...` would train with; training is stopped
    before it starts. Bad arguments raise bam_numpy's InputError, as the command line would."""
    from bam_numpy import training
    seen = {}

    def fake_train(cfg, data, *args, **kwargs):
        seen.update(cfg=cfg, data=data)
        raise SystemExit(0)
    monkeypatch.setattr(training, "train", fake_train)
    with pytest.raises(SystemExit):
        training.main([str(a) for a in argv])
    return seen["cfg"], seen["data"]


@pytest.fixture
def one_torch_thread():
    """Small models train and evaluate faster on one thread, and much faster when other jobs share
    the two cores (29 s against 38 s for the Beauty evaluation)."""
    import torch
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)

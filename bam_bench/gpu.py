"""
bam_bench/gpu.py: checks and times bam_minimal.py's CUDA path against its CPU path, in one run.

    python -m bam_bench.gpu --json gpu.json        # on a machine with a GPU (about 3 minutes)
    python -m bam_bench.gpu --dry-run              # the same steps on the CPU, small, to test the script

1. Agreement: the same weights and batch (history, target, negatives, BaM draws, MIND's routing
   noise) on the CPU and on CUDA, for ComiRec-SA and MIND, in float64 and float32: interests,
   selection probabilities, loss and every gradient (max relative error), and full-item metrics.
2. Repeatability: two GPU trainings with the same seed (docs/determinism.md: not promised bit for bit).
3. Speed: the training step and full evaluation on data the size of Amazon Beauty (22,363 users,
   12,101 items, synthetic), against a bare matmul of the same FLOPs on the same GPU.
"""
import argparse
import time

import numpy as np
import torch

import bam_minimal as bm
from bam_bench.measure import median_time
from bam_data.synth import SynthConfig, generate
from bam_runs import run_folder


def rel_err(a, b):
    a, b = a.detach().double().cpu(), b.detach().double().cpu()
    return float((a - b).abs().max() / b.abs().max().clamp_min(1e-30))


def agreement(data, model_name, dtype, device):
    """Forward, loss and gradients of one batch on the CPU and on `device`."""
    cfg = bm.Config(model=model_name, selection="bam", n_negatives=256)
    torch.manual_seed(0)
    cpu = bm.build_model(cfg, data.n_items).to(dtype)
    gpu = bm.build_model(cfg, data.n_items).to(dtype).to(device)
    gpu.load_state_dict(cpu.state_dict())
    history, mask, target = (torch.as_tensor(a) for a in bm.train_batch(data, np.random.default_rng(0), 128, 50))
    gen = torch.Generator().manual_seed(1)
    negatives = torch.randint(0, data.n_items + 1, (256,), generator=gen)
    u = torch.rand(128, generator=gen, dtype=dtype)
    noise = torch.randn(128, cfg.n_interests, 50, generator=gen, dtype=dtype)
    out = {}
    for name, net, dev in (("cpu", cpu, "cpu"), ("gpu", gpu, device)):
        args = [t.to(dev) for t in (history, mask.to(dtype), target, negatives, u, noise)]
        interests, attention = net(args[0], args[1], routing=args[5])
        loss = bm.bam_loss(net, cfg, interests, attention, args[2], args[3], args[4], 1.0)
        loss.backward()
        out[name] = dict(interests=interests, loss=loss, grads={k: p.grad for k, p in net.named_parameters()
                                                                 if p.grad is not None})
    errs = dict(interests=rel_err(out["gpu"]["interests"], out["cpu"]["interests"]),
                loss=rel_err(out["gpu"]["loss"], out["cpu"]["loss"]))
    errs.update({f"grad {k}": rel_err(out["gpu"]["grads"][k], g) for k, g in out["cpu"]["grads"].items()})
    return errs


def eval_agreement(data, device):
    cfg = bm.Config()
    torch.manual_seed(0)
    cpu = bm.build_model(cfg, data.n_items).eval()
    gpu = bm.build_model(cfg, data.n_items).to(device).eval()
    gpu.load_state_dict(cpu.state_dict())
    m_cpu, r_cpu, _ = bm.evaluate(bm.model_scorer(cpu), data, "test", bm.Config(device="cpu"))
    m_gpu, r_gpu, _ = bm.evaluate(bm.model_scorer(gpu), data, "test", bm.Config(device=device))
    return dict(metrics_cpu=m_cpu, metrics_gpu=m_gpu, same_rank_share=float((r_cpu == r_gpu).mean()),
                max_metric_diff=max(abs(m_cpu[k] - m_gpu[k]) for k in m_cpu))


def repeatability(data, device, iters):
    cfg = bm.Config(device=device, max_iters=iters, eval_every=iters // 2)
    runs = [bm.train(cfg, data, log=lambda s: None)[1] for _ in range(2)]
    return dict(test_a=runs[0]["test"], test_b=runs[1]["test"], identical=runs[0]["test"] == runs[1]["test"],
                seconds=runs[0]["seconds"])


def speed(data, device, steps, batch_size=128):
    cfg = bm.Config(device=device, batch_size=batch_size)
    torch.manual_seed(0)
    model = bm.build_model(cfg, data.n_items).to(device)
    opt = torch.optim.Adam(model.parameters(), lr=cfg.lr, fused=True)
    rng, gen = np.random.default_rng(0), torch.Generator(device).manual_seed(0)
    sync = torch.cuda.synchronize if device == "cuda" else None  # kernels run on after the call returns

    def steps_fn():
        for _ in range(steps):
            h, m, t = (torch.as_tensor(a, device=device) for a in bm.train_batch(data, rng, cfg.batch_size, 50))
            neg = torch.randint(0, data.n_items + 1, (cfg.n_negatives,), device=device, generator=gen)
            u = torch.rand(len(t), device=device, generator=gen)
            interests, attention = model(h, m, gen)
            loss = bm.bam_loss(model, cfg, interests, attention, t, neg, u, 1.0)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
    step = median_time(steps_fn, repeat=3, sync=sync) / steps
    model.eval()
    ev = median_time(lambda: bm.evaluate(bm.model_scorer(model), data, "test", cfg), repeat=3, sync=sync)
    n_users, n_rows = len(data.users), data.n_items + 1
    a = torch.randn(n_users * cfg.n_interests, cfg.dim, device=device)
    b = torch.randn(cfg.dim, n_rows, device=device)
    out = torch.empty(4096, n_rows, device=device)
    per = median_time(lambda: [torch.mm(a[i:i + 4096], b, out=out[:len(a[i:i + 4096])])
                               for i in range(0, len(a), 4096)], repeat=3, sync=sync)
    return dict(batch_size=batch_size, train_step_ms=step * 1e3, train_samples_per_s=batch_size / step,
                eval_seconds=ev, eval_users_per_s=n_users / ev, scoring_matmul_seconds=per,
                eval_ratio_to_matmul=ev / per)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--json", default=None)
    ap.add_argument("--dry-run", action="store_true", help="run every step on the CPU at a small size")
    args = ap.parse_args()
    device = "cpu" if args.dry_run else "cuda"
    if device == "cuda" and not torch.cuda.is_available():
        raise SystemExit("error: no CUDA device (fix: run on a machine with a GPU, or pass --dry-run)")
    size = SynthConfig(users=600, items=400, mean_len=9) if args.dry_run else SynthConfig(
        users=22363, items=12101, topics=60, mean_len=9)
    data = bm.Dataset(generate(size)[0], n_items=size.items)
    small = bm.Dataset(generate(SynthConfig(users=600, items=400))[0], n_items=400)
    report = dict(torch=torch.__version__, device=torch.cuda.get_device_name() if device == "cuda" else "cpu",
                  data=dict(users=len(data.users), items=data.n_items, interactions=data.n_interactions))
    t0 = time.time()
    for model_name in ("comirec", "mind"):
        for dtype in (torch.float64, torch.float32):
            key = f"agreement {model_name} {str(dtype)[6:]}"
            report[key] = agreement(small, model_name, dtype, device)
            print(key, {k: f"{v:.1e}" for k, v in report[key].items()}, flush=True)
    report["evaluation agreement"] = eval_agreement(small, device)
    print("evaluation agreement", report["evaluation agreement"], flush=True)
    report["repeatability"] = repeatability(small, device, 200 if args.dry_run else 2000)
    print("repeatability", report["repeatability"], flush=True)
    for b in (128, 1024):
        report[f"speed B={b}"] = speed(data, device, 20 if args.dry_run else 200, b)
        print(f"speed B={b}", {k: round(v, 4) for k, v in report[f"speed B={b}"].items()}, flush=True)
    report["seconds"] = time.time() - t0
    if args.json:
        run_folder.save_json(report, args.json)


if __name__ == "__main__":
    main()

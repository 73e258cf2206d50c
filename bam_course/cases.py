"""
bam_course/cases.py: the graded functions of the PyTorch track (Parts 1-7): their cases (public: seed 0 and
fixed shapes; hidden: other seeds and shapes), hints, and known-wrong variants (common.Bug). The calls are
the harness's. Runs in the grader's process only; docs/course.md has the details.
"""
import numpy as np
import torch

from bam_course.common import PARAMS, Bug, Case, Graded, comirec_inputs, given, kaiming, size
from bam_course.harness import tensor_out as T

# -----------------------------------------------------------------------------
# Part 1: ComiRecSA.forward


VALUES = ("interests", "attention")   # ComiRecSA's bugs are told by the values (the gradients follow them)


class ComiRecSA(Graded):
    key = "ComiRecSA"
    hints = dict(
        attention="attention = softmax over the sequence L of linear2(linear1(h + position_embedding)), "
                  "the (B, L, N) logits transposed to (B, N, L), with the logit MASK at padded positions",
        interests="interests = attention @ h, where h = embeddings(history) * mask[..., None]",
        gradients="the values are right but the gradients are not: keep every step in the autograd graph "
                  "(no .detach(), .data, torch.no_grad() or round trips through numpy)")

    def fallback_hint(self, sub, got, want, failed):
        if sub == "gradients" and failed & {"attention", "interests"}:  # the generic hint would be untrue
            return ("the gradients follow from the forward pass, and its values are wrong here: fix attention "
                    "and interests first")
        return self.hints.get(sub, "")

    def cases(self, rng, public):
        out = []
        for c in range(1 if public else 2):
            B, L = size(rng, public, 4, 5, 9), size(rng, public, 6, 7, 12)
            d, N, n_items = size(rng, public, 8, 5, 12), size(rng, public, 3, 2, 5), size(rng, public, 30, 40, 80)
            if not public and N == 3:
                N = 4
            history, mask, weights = comirec_inputs(rng, B, L, d, N, n_items)
            out.append(Case(
                dict(weights=weights, history=history, mask=mask, dim=d, n_interests=N, seq_len=L, n_items=n_items,
                     d_interests=rng.standard_normal((B, N, d)).astype(np.float32),
                     d_attention=rng.standard_normal((B, N, L)).astype(np.float32)),
                f"B={B}, L={L}, d={d}, N={N}, I={n_items}, history lengths {mask.sum(1).astype(int).tolist()}",
                dict(attention=["attention"], interests=["interests"],
                     gradients=[f"grad/{k}" for k in PARAMS])))
        return out

    bugs = (
        Bug("you took the softmax over the N interests; ComiRec-SA normalises each interest's weights over the "
            "sequence: softmax over L of the (B, N, L) logits",
            (("logits.transpose(1, 2).softmax(-1)", "logits.softmax(-1).transpose(1, 2)"),), VALUES),
        Bug("padded positions get attention; give them the logit MASK (-2^32 + 1) before the softmax, so that "
            "their weight is exactly 0", (("real = mask > 0", "real = mask > -1"),), VALUES),
        Bug("the position embedding only enters the attention MLP; the interests are attention @ h with h = "
            "embeddings(history) * mask, without it",
            (("return attention @ h,", "return attention @ (h + self.position_embedding),"),), VALUES),
        Bug("you left out the position embedding: the MLP reads h + position_embedding",
            (("(h + self.position_embedding)[real]", "h[real]"),), VALUES),
    )

# -----------------------------------------------------------------------------
# Part 2: select_interest


HARD, SAMPLED = given("selection", "hard"), given("selection", "bam", "bam-l")


class SelectInterest(Graded):
    key = "select_interest"
    rtol, atol = 1e-5, 1e-6
    hints = dict(
        hard="selection=hard: index = argmax_n logits (KDD24 Eq. 1), the first one on ties; "
             "probs = softmax(tau * logits)",
        bam="selection=bam: probs = softmax(tau * logits) and index = #{n : cumsum(probs)_n <= u}, clamped "
            "to N - 1 (KDD24 Eq. 3, the CDF inverted at u)")

    def cases(self, rng, public):
        B, N = size(rng, public, 6, 7, 12), size(rng, public, 4, 5, 7)
        taus = [1.0, 2.0] if public else [float(rng.choice([0.5, 3.0])), float(rng.uniform(1.2, 4.0))]
        out = []
        logits = (rng.standard_normal((B, N)) * 2).astype(np.float32)
        tied = logits.copy()                           # every row has its maximum twice
        for r in range(B):
            j, k = rng.choice(N, 2, replace=False)
            tied[r, max(j, k)] = tied[r].max() + 1.0
            tied[r, min(j, k)] = tied[r, max(j, k)]
        u = rng.random(B).astype(np.float32)
        out.append(Case(dict(logits=tied, selection="hard", tau=taus[1], u=u),
                        f"selection=hard, tau={taus[1]:g}, B={B}, N={N}, every row with a tied maximum",
                        dict(hard=["index", "probs"])))
        for tau, sel in zip(taus, ("bam", "bam-l")):
            logits = (rng.standard_normal((B, N)) * 2).astype(np.float32)
            out.append(Case(dict(logits=logits, selection=sel, tau=tau, u=rng.random(B).astype(np.float32)),
                            f"selection={sel}, tau={tau:g}, B={B}, N={N}, u ~ U[0, 1)", dict(bam=["index", "probs"])))
        u = rng.choice(np.array([0.0, 0.25, 0.5, 0.75], np.float32), B)  # equal logits over N = 4: probs 1/4,
        u[:2] = 0.5, 0.75                     # u on the CDF's steps; argmax (0) and a strict count (1, 2) miss these
        out.append(Case(dict(logits=np.full((B, 4), float(rng.standard_normal()), np.float32), selection="bam",
                             tau=1.0, u=u), f"selection=bam, N=4 equal logits (probs exactly 0.25), u on the CDF's "
                        f"steps {u.tolist()}", dict(bam=["index"])))
        rows = []                             # float32 CDFs that end below 1, u at that last value: only the clamp
        while len(rows) < B:                  # keeps the index in range
            x = (rng.standard_normal(N) * 2).astype(np.float32)
            last = torch.softmax(taus[0] * torch.as_tensor(x), -1).cumsum(-1)[-1].item()
            if last < 1.0:
                rows.append((x, last))
        out.append(Case(dict(logits=np.stack([r[0] for r in rows]), selection="bam", tau=taus[0],
                             u=np.array([r[1] for r in rows], np.float32)),
                        f"selection=bam, tau={taus[0]:g}, u = cumsum(probs)[-1] < 1 (float32 rounding)",
                        dict(bam=["index"])))
        return out

    bugs = (
        Bug("on ties, hard selection takes the FIRST maximum (as torch.argmax does)",
            (("return logits.argmax(-1), probs", "return logits.shape[-1] - 1 - logits.flip(-1).argmax(-1), probs"),),
            ("index",), HARD),
        Bug("selection=hard is the plain argmax of the logits (KDD24 Eq. 1); only bam and bam-l sample",
            (('if selection == "hard":', 'if selection == "never":'),), ("index",), HARD),
        Bug("you left out tau: probs = softmax(tau * logits), for every selection",
            (("softmax(tau * logits", "softmax(logits"),)),
        Bug("you took the argmax; BaM samples by inverting the CDF of softmax(tau * logits) at u: "
            "index = #{n : cumsum(probs)_n <= u}", (('if selection == "hard":', "if True:"),), ("index",), SAMPLED),
        Bug("at a u that falls exactly on a step of the CDF, count the n with cumsum(probs)_n <= u "
            "(torch.searchsorted(..., right=True)); you counted < u",
            (("cumsum(-1) <= u", "cumsum(-1) < u"),), ("index",), SAMPLED),
        Bug("float32 rounding can leave cumsum(probs)[-1] below u, and the count is then N: clamp the index to "
            "N - 1", (("index.clamp(max=logits.shape[-1] - 1)", "index"),), ("index",), SAMPLED),
        Bug("tau multiplies the logits here (a larger tau is closer to hard): softmax(tau * logits), not "
            "softmax(logits / tau)", (("softmax(tau * logits", "softmax(logits / tau"),), (), SAMPLED),
        Bug("walk the CDF from interest 0 upwards: index = #{n : cumsum(probs)_n <= u}",
            (("probs.cumsum(-1) <= u[:, None]", "probs.flip(-1).cumsum(-1) <= 1 - u[:, None]"),), ("index",), SAMPLED),
    )

# -----------------------------------------------------------------------------
# Part 3: softmax_loss


LSE = "torch.logsumexp(torch.cat([pos[..., None], neg], -1), -1)"
OVERFLOW = "your loss overflows (inf or nan) on large scores: use torch.logsumexp, not log(sum(exp(...)))"


class SoftmaxLoss(Graded):
    key = "softmax_loss"
    hints = dict(
        sampled="loss = logsumexp over [pos, neg_1, ..., neg_S] of the last axis, minus pos: one value per row",
        full="the full softmax marks the target and padding with -inf among the negatives; logsumexp handles "
             "-inf (it adds exp(-inf) = 0)",
        remi="REMI, beta > 0: the negative logits become neg + log S + log_softmax(beta * neg, -1), inside the "
             "graph")

    def fallback_hint(self, sub, got, want, failed):
        loss, expected = got.get("loss"), want.get("loss")
        if loss is not None and np.shape(loss) == np.shape(expected) and np.asarray(loss).dtype.kind == "f" \
                and (~np.isfinite(loss) & np.isfinite(expected)).any():
            return OVERFLOW
        return self.hints.get(sub, "")

    def cases(self, rng, public):
        B, K, S = size(rng, public, 4, 5, 8), size(rng, public, 2, 3, 4), size(rng, public, 10, 12, 30)
        out = []

        def case(pos, neg, beta, note, sub):
            d = rng.standard_normal(pos.shape).astype(np.float32)
            out.append(Case(dict(pos=pos.astype(np.float32), neg=neg.astype(np.float32), beta=beta, d_loss=d),
                            note, {sub: ["loss", "grad/pos", "grad/neg"]}))
        case(rng.standard_normal((B, K)), rng.standard_normal((B, K, S)), 0.0,
             f"pos ({B}, {K}), neg ({B}, {K}, {S}), beta=0", "sampled")
        case(rng.standard_normal(B) * 40, rng.standard_normal((B, S)) * 40 + 60, 0.0,
             f"pos ({B},), neg ({B}, {S}), large scores (up to ~200)", "sampled")
        neg = rng.standard_normal((B, K, S + 5))
        neg[rng.random(neg.shape) < 0.3] = -np.inf
        neg[:, :, 0] = -np.inf
        case(rng.standard_normal((B, K)), neg, 0.0, f"neg ({B}, {K}, {S + 5}) with -inf entries (full softmax)", "full")
        beta = 0.5 if public else float(rng.uniform(0.8, 2.0))
        case(rng.standard_normal((B, K)) * 2, rng.standard_normal((B, K, S)) * 2, beta,
             f"REMI beta={beta:g}, pos ({B}, {K}), neg ({B}, {K}, {S})", "remi")
        return out

    bugs = (
        Bug("the target belongs in the softmax: logsumexp over [pos, negatives], then minus pos",
            (("torch.cat([pos[..., None], neg], -1)", "neg"),)),
        Bug("sign: the loss is -log softmax(target) = logsumexp(...) - pos, which is never negative",
            ((f"{LSE} - pos", f"pos - {LSE}"),)),
        Bug(OVERFLOW, ((LSE, "torch.cat([pos[..., None], neg], -1).exp().sum(-1).log()"),)),
        Bug("with beta > 0 REMI reweights the negatives: neg + log S + log_softmax(beta * neg)",
            (("if beta else neg", "if 0 else neg"),), (), given("beta")),
        Bug("REMI: the values are right but the gradients are not: the weights stay in the graph (no .detach())",
            (("log_softmax(beta * neg, -1)", "log_softmax(beta * neg, -1).detach()"),), (), given("beta")),
        Bug("REMI: the weights w = S softmax(beta * neg) have mean 1; you left out the log S",
            (("math.log(neg.shape[-1]) + ", ""),), (), given("beta")),
    )

# -----------------------------------------------------------------------------
# Part 4: bam_loss


BAM, EXPECTED = given("cfg.selection", "bam"), given("cfg.selection", "expected")
REMI_LAMBDA = given("cfg.remi_lambda")   # the case with REMI's beta and lambda


class BamLoss(Graded):
    key = "bam_loss"
    hints = dict(
        hard="selection=hard: logits = interest_logits(...) with the target embedding detached, "
             "select_interest(logits, cfg.selection, tau, u), then softmax_loss of the chosen interest's scores "
             "from item_scores, averaged over the batch",
        bam="selection=bam: the same as hard, but select_interest samples the interest at u with tau",
        expected="selection=expected: item_scores of all N interests, each interest's softmax_loss weighted by "
                 "its probability (detached) and summed over N, then averaged over the batch",
        extras="multi_loss adds softmax_loss(pos.logsumexp(1), neg.logsumexp(1)) over all interests; "
               "remi_beta goes to softmax_loss; remi_lambda adds remi_lambda * routing_regulariser(attention, dim)")
    OUTPUTS = ["loss", "grad/interests", "grad/embeddings", "grad/attention"]

    def cases(self, rng, public):
        B, N, d = size(rng, public, 5, 6, 10), size(rng, public, 3, 4, 6), size(rng, public, 8, 5, 12)
        L, n_items, S = size(rng, public, 6, 7, 10), size(rng, public, 40, 50, 90), size(rng, public, 12, 15, 40)
        tau = 1.5 if public else float(rng.uniform(2.0, 4.0))
        settings = [("hard", dict(selection="hard")),
                    ("bam", dict(selection="bam")),
                    ("bam", dict(selection="bam", loss="full")),
                    ("expected", dict(selection="expected")),
                    ("extras", dict(selection="bam", multi_loss=True)),
                    ("extras", dict(selection="bam", remi_beta=0.5, remi_lambda=2.0))]
        out = []
        for sub, over in settings:
            cfg = dict(selection="bam", loss="sampled", multi_loss=False, remi_beta=0.0, remi_lambda=0.0,
                       dim=d, n_interests=N, seq_len=L)
            cfg.update(over)
            logits = rng.standard_normal((B, N, L))
            attention = np.exp(logits) / np.exp(logits).sum(-1, keepdims=True)
            out.append(Case(
                dict(cfg=cfg, embeddings=kaiming(rng, n_items + 1, d),
                     interests=rng.standard_normal((B, N, d)).astype(np.float32),
                     attention=attention.astype(np.float32), target=rng.integers(1, n_items + 1, B),
                     negatives=rng.integers(0, n_items + 1, S), u=rng.random(B).astype(np.float32), tau=tau),
                ", ".join(f"{k}={v}" for k, v in over.items()) + f", tau={tau:g}, B={B}, N={N}, d={d}, S={S}",
                {sub: self.OUTPUTS}))
        return out

    def prepare(self, ref, args):
        """What the stand-ins replay in the student's process: every call that the reference's bam_loss
        makes to select_interest and softmax_loss on this case, with its outputs and derivatives."""
        calls = dict(select_interest={}, softmax_loss={})
        real = dict(select_interest=ref.select_interest, softmax_loss=ref.softmax_loss)

        def select_interest(logits, selection, tau, u):
            x = logits.detach().clone().requires_grad_()                         # (B, N)
            index, probs = real["select_interest"](x, selection, tau, u)
            jac = torch.stack([torch.autograd.grad(probs[:, n].sum(), x, retain_graph=True)[0]
                               for n in range(probs.shape[1])], 1)               # (B, N, N): d probs_n / d logits_m
            calls["select_interest"][str(len(calls["select_interest"]))] = dict(
                logits=T(logits), selection=selection, tau=float(tau), u=T(u), index=T(index), probs=T(probs),
                jac=T(jac))
            return real["select_interest"](logits, selection, tau, u)

        def softmax_loss(pos, neg, beta=0.0):
            p, n = pos.detach().clone().requires_grad_(), neg.detach().clone().requires_grad_()
            loss = real["softmax_loss"](p, n, beta)                                # (...): one loss per row
            d_pos, d_neg = torch.autograd.grad(loss.sum(), (p, n), allow_unused=True)
            d_pos = torch.zeros_like(p) if d_pos is None else d_pos
            d_neg = torch.zeros_like(n) if d_neg is None else d_neg
            S = neg.shape[-1]
            calls["softmax_loss"][str(len(calls["softmax_loss"]))] = dict(
                pos=T(p).reshape(-1).astype(np.float64), neg=T(n).reshape(-1, S).astype(np.float64),
                beta=float(beta), loss=T(loss).reshape(-1), d_pos=T(d_pos).reshape(-1), d_neg=T(d_neg).reshape(-1, S))
            return real["softmax_loss"](pos, neg, beta)
        ref.select_interest, ref.softmax_loss = select_interest, softmax_loss  # bam_loss looks them up at call time
        try:
            self.call(ref, args)
        finally:
            ref.select_interest, ref.softmax_loss = real["select_interest"], real["softmax_loss"]
        return dict(replay={k: v for k, v in calls.items() if v})

    bugs = (
        Bug("you summed the loss over the batch; average it (mean)", (("loss = loss.mean()", "loss = loss.sum()"),)),
        Bug("you took the argmax interest; pass cfg.selection, tau and u to select_interest, which samples it for "
            "bam", (("select_interest(logits, cfg.selection,", 'select_interest(logits, "hard",'),), (), BAM),
        Bug("selection=expected: you averaged the loss over the N interests; weight each interest's loss by its "
            "probability and sum over N", (("cfg.remi_beta)).sum(-1)", "cfg.remi_beta)).mean(-1)"),), (), EXPECTED),
        Bug("selection=expected: the probabilities are constants (probs.detach()), else the loss trains the "
            "selection", (("probs.detach() * softmax_loss", "probs * softmax_loss"),), (), EXPECTED),
        Bug("multi_loss=True: add the [BD24] multi-interest loss, softmax_loss of the scores' logsumexp over the N "
            "interests", (("if cfg.multi_loss:", "if False:"),), (), given("cfg.multi_loss", True)),
        Bug("remi_lambda > 0: add remi_lambda * routing_regulariser(attention, cfg.dim)",
            (("if cfg.remi_lambda else loss", "if False else loss"),), (), REMI_LAMBDA),
        Bug("pass cfg.remi_beta to softmax_loss", (("cfg.remi_beta", "0.0", 3),), (), REMI_LAMBDA),
    )

# -----------------------------------------------------------------------------
# Part 5: mask_history


EXCLUDE, OFFICIAL, NONE = (given("mode", m) for m in ("exclude", "official", "none"))
UNMASKED = given("mode", "exclude", "none")   # the modes that give item 0 -inf


class MaskHistory(Graded):
    key = "mask_history"
    hints = dict(
        exclude="mode=exclude: every item of full_history (the whole history before the target, 0-padded) "
                "gets -inf, and item 0 (padding) too",
        official="mode=official: the items of `window` (the model's L items, padding 0 included) get score 0, "
                 "as the official code does; nothing else changes",
        none="mode=none: only the padding item 0 gets -inf")

    def cases(self, rng, public):
        b, n_items, K, W = size(rng, public, 4, 5, 8), size(rng, public, 30, 40, 70), size(rng, public, 12, 14, 20), 5
        out = []
        for mode in ("exclude", "official", "none"):
            lengths = rng.integers(1, K + 1, b)
            lengths[0], lengths[1] = K, 2                     # one history longer than the window, one shorter
            full = np.zeros((b, K), np.int64)
            window = np.zeros((b, W), np.int64)
            for r, k in enumerate(lengths):
                items = rng.choice(np.arange(1, n_items + 1), k, replace=False)
                full[r, :k] = items
                window[r, :min(k, W)] = items[-W:]
            out.append(Case(dict(scores=rng.standard_normal((b, n_items + 1)).astype(np.float32), full_history=full,
                                 window=window, mode=mode),
                            f"mode={mode}, scores ({b}, {n_items + 1}), full_history ({b}, {K}), window ({b}, {W}), "
                            f"history lengths {lengths.tolist()}", {mode: ["scores"]}))
        return out

    bugs = (
        Bug("history left unmasked: with mode=exclude every item of full_history (everything the user saw before "
            "the target) gets -inf", (('if mode == "exclude":', "if False:"),), (), EXCLUDE),
        Bug("exclude masks the FULL history before the target, not only the model's window of L items",
            (("scatter_(1, full_history, -math.inf)", "scatter_(1, window, -math.inf)"),), (), EXCLUDE),
        Bug("the padding item 0 is never ranked: set its score to -inf",
            (("scores[:, 0] = -math.inf", "scores = scores"),), (), UNMASKED),
        Bug("mode=official gives the window's items the score 0, not -inf (the official code's behaviour, kept for "
            "comparison)", (("scatter_(1, window, 0.0)", "scatter_(1, window, -math.inf)"),), (), OFFICIAL),
        Bug("mode=official uses `window` (the model's L items), not the full history",
            (("scatter_(1, window, 0.0)", "scatter_(1, full_history, 0.0)"),), (), OFFICIAL),
        Bug("mode=official changes nothing but the window's items: item 0 keeps its score unless the window holds "
            "padding", (("return scores.scatter_(1, window, 0.0)", "scores.scatter_(1, window, 0.0)"),), (),
            OFFICIAL),
        Bug("mode=none leaves the history unmasked; only item 0 gets -inf",
            (('if mode == "exclude":', 'if mode != "official":'),), (), NONE),
    )

# -----------------------------------------------------------------------------
# Part 6: target_rank


class TargetRank(Graded):
    key = "target_rank"
    hints = {"distinct": "rank = the number of items scored strictly higher than the target (0-based)",
             "ties": "an item with the SAME score ranks above the target when its id is lower: "
                     "rank = #{j : s_j > s_t} + #{j < t : s_j = s_t}",
             "non-finite": "a NaN or +inf score of another item ranks ABOVE the target (an item whose score "
                           "overflowed must never help the target); a target whose own score is not finite (NaN, "
                           "+inf or -inf) is a miss: its rank is the number of columns; -inf is the masking value "
                           "and ranks below every finite score"}

    def cases(self, rng, public):
        b, n = size(rng, public, 6, 7, 12), size(rng, public, 20, 25, 60)
        target = rng.integers(0, n, b)
        out = []
        scores = rng.standard_normal((b, n)).astype(np.float32)
        scores[rng.random((b, n)) < 0.2] = -np.inf
        scores[np.arange(b), target] = rng.standard_normal(b)
        out.append(Case(dict(scores=scores, target=target), f"scores ({b}, {n}) without ties, some -inf (masked)",
                        dict(distinct=["rank"])))
        ties = rng.integers(0, 4, (b, n)).astype(np.float32)       # few values: many ties
        ties[0] = 1.0                                              # a row of equal scores, target in the middle
        tie_target = rng.integers(0, n, b)
        tie_target[0] = n // 2
        out.append(Case(dict(scores=ties, target=tie_target),
                        f"scores ({b}, {n}) in {{0, 1, 2, 3}}: many ties", dict(ties=["rank"])))
        odd = rng.standard_normal((b, n)).astype(np.float32)
        odd[rng.random((b, n)) < 0.2] = -np.inf                    # masked items
        t = rng.integers(0, n, b)
        odd[np.arange(b), t] = rng.standard_normal(b)
        odd[0, t[0]] = -np.inf                                     # a masked target
        odd[1, :] = -np.inf                                        # every item masked
        odd[2, t[2]], odd[3, t[3]] = np.nan, np.inf                # a NaN target, a +inf target
        odd[4, t[4]] = odd[4].max() + 1.0                          # the best item, but for a NaN and a +inf
        odd[4, (t[4] + 1) % n], odd[4, (t[4] + 2) % n] = np.nan, np.inf
        for r in range(5, b):                                      # NaN and +inf among the others
            others = rng.choice(np.delete(np.arange(n), t[r]), 3, replace=False)
            odd[r, others] = [np.nan, np.inf, np.nan]
        out.append(Case(dict(scores=odd, target=t), f"scores ({b}, {n}) with non-finite entries: row 0 a -inf "
                        "(masked) target, row 1 all masked, rows 2 and 3 a NaN and a +inf target, rows 4 and on "
                        "NaN and +inf scores of other items (row 4: the target is the best finite item)",
                        {"non-finite": ["rank"]}))
        return out

    bugs = (
        Bug("ties broken the other way: an equal score ranks above the target when its id is LOWER (lower id first)",
            (("(ids < target[tied, None])", "(ids > target[tied, None])"),)),
        Bug("ties: equal scores with a lower id rank above the target; you counted only strictly higher scores",
            (("if tied.any():", "if False:"),)),
        Bug("ties: only equal scores with a LOWER id rank above the target; you counted all of them",
            (("(ids < target[tied, None])", "(ids != target[tied, None])"),)),
        Bug("ranks are 0-based: the best item has rank 0", (("rank, scores.shape[1])", "rank + 1, scores.shape[1])"),)),
        Bug("a higher score ranks first; you counted the items below the target",
            (("((total + spread) / 2)", "((spread - total) / 2)"),)),
        Bug("a target whose own score is not finite (-inf: masked; NaN; +inf) is a miss: its rank is the number of "
            "columns, whatever the other scores",   # compared, not subtracted: s - s is NaN for an infinite s
            (("(scores - s).sign_() if", "((scores > s).float() - (scores < s).float()) if"),
             ("torch.where(s[:, 0].isfinite(), rank, scores.shape[1])", "rank"))),
        Bug("a NaN or +inf score of another item ranks ABOVE the target; you counted it as -inf, so an item whose "
            "score overflowed helps the target climb",
            (("nan_to_num_(nan=math.inf, posinf=math.inf,", "nan_to_num_(nan=-math.inf, posinf=-math.inf,"),)),
    )

# -----------------------------------------------------------------------------
# Part 7: metrics_from_ranks


class MetricsFromRanks(Graded):
    key = "metrics_from_ranks"
    rtol, atol = 1e-6, 1e-9
    hints = dict(recall="Recall@K = the share of users whose 0-based rank is < K",
                 ndcg="nDCG@K = the mean over ALL users of 1 / log2(rank + 2) for a hit (rank < K) and 0 "
                      "for a miss")

    def cases(self, rng, public):
        out = []
        for c in range(2):
            U = size(rng, public, 40, 50, 120)
            ks = (10, 20) if public or c == 0 else tuple(sorted(int(k) for k in rng.choice([1, 3, 5, 50], 2,
                                                                                                replace=False)))
            rank = np.where(rng.random(U) < 0.6, rng.integers(0, 25, U), rng.integers(25, 500, U))
            rank[:3] = [0, ks[0] - 1, ks[0]]                      # the edges: first place, last hit, first miss
            out.append(Case(dict(rank=rank.astype(np.int64), ks=ks), f"{U} ranks (first three {rank[:3].tolist()}), "
                            f"ks={ks}", dict(recall=[f"recall@{k}" for k in ks], ndcg=[f"ndcg@{k}" for k in ks])))
        return out

    bugs = (
        Bug("nDCG: the ranks are 0-based, so a hit at rank r is discounted by log2(r + 2); log2(rank + 1) divides "
            "by zero at rank 0", (("np.log2(rank + 2)", "np.log2(rank + 1)"),)),
        Bug("nDCG uses log2, not the natural log", (("np.log2(rank + 2)", "np.log(rank + 2)"),)),
        Bug("Recall@K counts ranks 0 .. K - 1: rank < K, not <= K", (("hit = rank < k", "hit = rank <= k"),)),
        Bug("nDCG is averaged over every user (a miss counts 0), not over the hits only",
            (("0.0).mean()", "0.0)[hit].mean() if hit.any() else 0.0"),)),
    )


GRADED = {p.key: p for p in (ComiRecSA(), SelectInterest(), SoftmaxLoss(), BamLoss(), MaskHistory(), TargetRank(),
                             MetricsFromRanks())}

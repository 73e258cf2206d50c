"""
bam_course/numpy_cases.py: the graded functions of the NumPy track (Parts 9-10, the hand-written backward
passes): `golden` against bam_numpy's gradients, `finite differences` against central differences of the
reference's forward pass along directions v that never leave the grader. docs/course.md has the details.
"""
import numpy as np

from bam_course.common import PARAMS, Bug, Case, Graded, comirec_inputs, given, size

H = 1e-6          # finite-difference step (float64)


def normal(rng, *shape):
    return rng.standard_normal(shape)


class Backward(Graded):
    """fd/<name> is <the student's gradients, dirs[name]> against the central difference of `objective` (the
    reference's forward pass, weighted by the upstream gradients) along dirs[name] = {input: v}."""
    rtol, atol = 1e-7, 1e-10
    private = ("dirs",)
    grads = {}                  # input -> the output that holds its gradient

    def tol(self, key):
        return (1e-5, 1e-6) if key.startswith("fd/") else (self.rtol, self.atol)

    def derive(self, args, outputs):
        out = {}
        for name, v in args["dirs"].items():
            got = {k: outputs.get(self.grads[k]) for k in v}
            if all(g is not None and np.shape(g) == v[k].shape for k, g in got.items()):
                out[f"fd/{name}"] = np.float64(sum((g * v[k]).sum() for k, g in got.items()))
        return out                  # a missing or misshapen gradient: the golden subtest says why

    def expected_extra(self, ref, args):
        x = self.inputs(args)

        def f(step, v):
            return self.objective(args, {k: x[k] + step * v[k] if k in v else x[k] for k in x})
        return {f"fd/{name}": np.float64((f(H, v) - f(-H, v)) / (2 * H)) for name, v in args["dirs"].items()}

# -----------------------------------------------------------------------------
# Part 9: softmax_loss_backward


class SoftmaxLossBackward(Backward):
    key = "softmax_loss_backward"
    grads = dict(pos="d_pos", neg="d_neg")
    hints = {"golden": "with p = softmax([pos, neg]) over the last axis: d pos = d_loss (p_0 - 1) and "
                       "d neg = d_loss p_1.. ; with beta > 0 the REMI weights depend on neg too",
             "finite differences": "your gradient disagrees with the numerical derivative of softmax_loss: check "
                                   "each term against the equation in the docstring"}

    def inputs(self, args):
        return dict(pos=args["pos"], neg=args["neg"])

    def objective(self, args, x):
        from bam_numpy.loss import softmax_loss
        return (args["d_loss"] * softmax_loss(x["pos"], x["neg"], args["beta"])).sum()

    def cases(self, rng, public):
        B, K, S = size(rng, public, 4, 5, 8), size(rng, public, 2, 3, 4), size(rng, public, 10, 12, 25)
        beta = 0.5 if public else float(rng.uniform(0.8, 2.0))
        shapes = [((B, K), (B, K, S), 0.0), ((B,), (B, S), 0.0), ((B, K), (B, K, S), beta)]
        if not public:  # ~100,000 entries: 200,000 forward passes of ~1 ms each to difference them one by one
            shapes.append(((32, 4), (32, 4, 800), beta))
        out = []
        for p_shape, n_shape, b in shapes:
            args = dict(pos=normal(rng, *p_shape), neg=normal(rng, *n_shape) * 2, beta=b, d_loss=normal(rng, *p_shape),
                        dirs={f"{i}": dict(pos=normal(rng, *p_shape), neg=normal(rng, *n_shape)) for i in range(3)})
            out.append(Case(args, f"pos {p_shape}, neg {n_shape}, beta={b:g}",
                            {"golden": ["d_pos", "d_neg"], "finite differences": ["fd/0", "fd/1", "fd/2"]}))
        return out

    bugs = (
        Bug("d pos: the loss is logsumexp(...) - pos, so d loss / d pos = p_0 - 1 (softmax minus one-hot); you left "
            "out the - 1", (("(p[..., 0] - 1)", "p[..., 0]"),)),
        Bug("multiply by the upstream gradient d_loss (the chain rule)",
            (("d_loss * (p[..., 0] - 1)", "(p[..., 0] - 1)"), ("d_loss[..., None] * p[..., 1:]", "p[..., 1:]"))),
        Bug("REMI: the weights depend on neg (softmax(beta * neg)), so d neg_k = (1 + beta) g_k - beta q_k sum_j g_j, "
            "not g_k", (("g = (1 + beta) * g - beta * q * g.sum(-1, keepdims=True)", "g = g"),), (),
            given("beta")),
    )

# -----------------------------------------------------------------------------
# Part 10: comirec_backward


class ComirecBackward(Backward):
    key = "comirec_backward"
    grads = {k: f"grad/{k}" for k in PARAMS}
    hints = {"golden": "chain rule from the outputs back: dA = d_interests h^T (+ d_attention), dh = A^T "
                       "d_interests, the softmax's backward over L, tanh' = 1 - a1^2, then dx = dz1 W1 goes to both "
                       "h and the position embedding, and dE collects dh at the real positions",
             "finite differences": "your gradient disagrees with the numerical derivative of the forward pass; "
                                   "the fd/<name> row that fails names the parameter to look at"}

    def cases(self, rng, public):
        out = []
        sizes = [None, None] + ([(256, 50, 64, 4, 500)] if not public else [])  # the large hidden case:
        for c, fixed in enumerate(sizes):  # W1 alone has 16,384 entries; one forward pass takes ~20 ms
            with_da = c >= 1
            B, L = size(rng, public, 3, 4, 6), size(rng, public, 5, 6, 8)
            d, N, n_items = size(rng, public, 4, 5, 7), size(rng, public, 2, 3, 4), size(rng, public, 12, 15, 25)
            if fixed:
                B, L, d, N, n_items = fixed
            history, mask, params = comirec_inputs(rng, B, L, d, N, n_items)
            params = {k: v.astype(np.float64) for k, v in params.items()}
            args = dict(params=params, history=history, mask=mask.astype(np.float64), d_interests=normal(rng, B, N, d),
                        dirs={k: {k: normal(rng, *v.shape)} for k, v in params.items()})
            if with_da:
                args["d_attention"] = normal(rng, B, N, L)
            note = f"B={B}, L={L}, d={d}, N={N}, I={n_items}, d_attention {'given' if with_da else 'None'}, history " \
                f"lengths {mask.sum(1).astype(int).tolist()}"
            out.append(Case(args, note, {"golden": [f"grad/{k}" for k in PARAMS],
                                         "finite differences": [f"fd/{k}" for k in PARAMS]}))
        return out

    def prepare(self, ref, args):
        """The cache of the reference's forward pass, computed here: the student's process has no bam_numpy."""
        _, _, cache = ref.comirec_forward({k: v.copy() for k, v in args["params"].items()}, args["history"],
                                          args["mask"])
        return dict(cache=cache)

    def inputs(self, args):
        return args["params"]

    def objective(self, args, params):
        from bam_numpy.encoders import comirec_forward
        interests, attention, _ = comirec_forward(params, args["history"], args["mask"])
        d_att = args.get("d_attention")
        return (interests * args["d_interests"]).sum() + ((attention * d_att).sum() if d_att is not None else 0.0)

    bugs = (
        Bug("softmax backward: d logits = A * (dA - sum_l A dA); you left out the - sum_l A dA term (the softmax's "
            "normalisation)", (("A * (dA - (A * dA).sum(-1, keepdims=True))", "A * dA"),)),
        Bug("linear1 ends with tanh: multiply by tanh' = 1 - a1^2 before going through W1",
            (("(d_real @ W2) * (1 - a1 * a1)", "(d_real @ W2)"),)),
        Bug("h feeds the attention MLP too: add dx = dz1 W1 to dh at the real positions",
            (("dh[b, pos] += dx", "dh = dh"),)),
        Bug("the position embedding gets the MLP's input gradient dx, summed over the batch at each position",
            (("np.add.at(d_pos[0], pos, dx)", "d_pos = d_pos"),)),
        Bug("add d_attention (the loss's gradient of the attention, REMI's regulariser) to dA",
            (("if d_attention is not None:", "if False:"),), (), given("d_attention")),
    )


GRADED = {p.key: p for p in (SoftmaxLossBackward(), ComirecBackward())}

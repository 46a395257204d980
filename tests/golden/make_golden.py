#!/usr/bin/python3
"""Golden fixtures for libconure from an independent PyTorch implementation.

Run by hand with Debian's Python (needs python3-torch, python3-numpy):

    /usr/bin/python3 tests/golden/make_golden.py        # rewrites tests/golden/*.txt

Everything is computed in float64.  Parameters are drawn from a fixed numpy
seed and rounded to float32 first, so the fixture describes exactly the model
the C side (float32) loads; the remaining differences are the C side's float32
arithmetic.  The model is written from the specification (method §2-§3 and
the test brief), never from lib/ code:

  - ids [B, L], 0 = padding; embedding E [V, C]; no positional embedding.
  - causal dilated conv, no bias, W [K, C_in, C_out]:
        out[t, o] = sum_j sum_i x[t - (K-1-j) d, i] W[j, i, o]   (x[t<0] = 0)
    block b: conv1 dilation d_b, conv2 dilation 2 d_b.
  - pre_norm : y = x + Conv2(ReLU(LN2(Conv1(ReLU(LN1(x))))))
    post_norm: y = x + ReLU(LN2(Conv2(ReLU(LN1(Conv1(x))))))
    LN over channels, eps 1e-8, biased variance, gain and bias.
  - next item (kind 1): input items[:, :-1], targets items[:, 1:], logits
    H W^T + b; positions with target 0 left out; loss = mean over the rest.
      softmax: CE over all V ids (id 0 is a class);
      sampled_softmax: n distinct candidates, `tries`; c = id-1, R = V-1,
        p(c) = (log(c+2)-log(c+1))/log(R+1), q = -expm1(tries*log1p(-p));
        logits [target, candidates...] = h.W[id] + b[id] - log q(id),
        candidates equal to the target get -inf; CE with the target at index 0.
  - kinds 2 (item rec) / 3 (classification): input items + [0] (length L+1),
    h = last block output at the last position; table E_k [n, C], no bias;
    score = h . E_k[j].
      bpr: mean softplus(-(s_pos - s_neg)) + l2/2 ||E_k||^2
      bce: mean [softplus(-s_pos) + softplus(s_neg)] + l2/2 ||E_k||^2
      softmax (classification): mean CE over all classes + l2/2 ||E_k||^2
  - user_vectors [B, C]: next item: last block output at the last position of
    the full row (length L); kinds 2/3: at the appended separator.
  - scores [B, n]: next item: logits at the last position of the full row with
    id 0 written as -inf (as conure_model_scores documents); kinds 2/3: h.E_k.

File format (one fixture per file, text, line oriented):
  lines starting with '#' are comments;
  config <key> <value>            (value has no spaces; dilations "1,2")
  tensor <name> <dtype> <ndim> <d0> .. <d(ndim-1)>
  <all values of that tensor, row-major, separated by single spaces>
dtype is f64 (written with %.17g; "-inf" allowed) or i64.  A scalar has
ndim 0 and one value.  Config keys: case, vocab_size, channels, kernel_width,
dilations, block_order, kind, n_targets, loss, l2, negatives (sampled
softmax only), batch, seq_len.  Tensors: backbone parameters under the C
layout names ("embedding", "block{b}.ln1.gain", "block{b}.ln1.bias",
"block{b}.conv1.weight", "block{b}.ln2.gain", "block{b}.ln2.bias",
"block{b}.conv2.weight"), "head.weight" [n, C], "head.bias" [n] (kind 1
only), inputs "items" [B, L], "targets" [B] (kinds 2/3), "samples" (sampled
softmax: [n] candidate ids; bpr/bce: [B] negative target ids), "tries"
(sampled softmax), outputs "loss", "grad.<param name>" for every parameter
above, "user_vectors" [B, C], "scores" [B, n].
"""

import math
import os

import numpy as np
import torch
import torch.nn.functional as F

torch.set_default_dtype(torch.float64)
HERE = os.path.dirname(os.path.abspath(__file__))
EPS = 1e-8


# ---------------------------------------------------------------- the model --
def causal_conv(x, w, d):
    """x [B, T, Cin], w [K, Cin, Cout]: out[t] = sum_j x[t-(K-1-j)d] @ w[j]."""
    B, T, C = x.shape
    K = w.shape[0]
    out = torch.zeros(B, T, w.shape[2], dtype=x.dtype)
    for j in range(K):
        s = (K - 1 - j) * d
        if s >= T:
            continue
        xs = torch.cat([torch.zeros(B, s, C, dtype=x.dtype), x[:, :T - s, :]], dim=1)
        out = out + xs @ w[j]
    return out


def conv_ref_torch(x, w, d):
    """The same convolution through F.conv1d with left padding (cross-check)."""
    K = w.shape[0]
    xt = F.pad(x.transpose(1, 2), ((K - 1) * d, 0))
    wt = w.permute(2, 1, 0)  # [Cout, Cin, K]
    return F.conv1d(xt, wt, dilation=d).transpose(1, 2)


def layer_norm(x, g, b):
    mu = x.mean(dim=-1, keepdim=True)
    var = ((x - mu) ** 2).mean(dim=-1, keepdim=True)
    return (x - mu) / torch.sqrt(var + EPS) * g + b


def backbone(P, cfg, ids):
    """ids LongTensor [B, T] -> last block output [B, T, C]."""
    x = P["embedding"][ids]
    for b, d in enumerate(cfg["dilations"]):
        p = lambda n: P["block%d.%s" % (b, n)]  # noqa: E731
        if cfg["block_order"] == "pre_norm":
            h = torch.relu(layer_norm(x, p("ln1.gain"), p("ln1.bias")))
            h = causal_conv(h, p("conv1.weight"), d)
            h = torch.relu(layer_norm(h, p("ln2.gain"), p("ln2.bias")))
            h = causal_conv(h, p("conv2.weight"), 2 * d)
        else:
            h = causal_conv(x, p("conv1.weight"), d)
            h = torch.relu(layer_norm(h, p("ln1.gain"), p("ln1.bias")))
            h = causal_conv(h, p("conv2.weight"), 2 * d)
            h = torch.relu(layer_norm(h, p("ln2.gain"), p("ln2.bias")))
        x = x + h
    return x


def log_q(ids, V, tries):
    """log of the expected count of id under the log-uniform sampler."""
    c = ids.to(torch.float64) - 1.0
    R = V - 1
    p = (torch.log(c + 2.0) - torch.log(c + 1.0)) / math.log(R + 1.0)
    q = -torch.expm1(tries * torch.log1p(-p))
    return torch.log(q)


def loss_fn(P, cfg, inp):
    kind, loss = cfg["kind"], cfg["loss"]
    items = inp["items"]
    if kind == 1:
        H = backbone(P, cfg, items[:, :-1])  # [B, L-1, C]
        tgt = items[:, 1:]
        mask = tgt != 0
        h = H[mask]            # [N, C]
        t = tgt[mask]          # [N]
        W, bias = P["head.weight"], P["head.bias"]
        if loss == "softmax":
            logits = h @ W.T + bias
            return F.cross_entropy(logits, t, reduction="mean")
        assert loss == "sampled_softmax"
        cand = inp["samples"]
        tries = inp["tries"]
        V = cfg["vocab_size"]
        lt = (h * W[t]).sum(-1) + bias[t] - log_q(t, V, tries)
        lc = h @ W[cand].T + bias[cand] - log_q(cand, V, tries)  # [N, n]
        lc = lc.masked_fill(cand[None, :] == t[:, None], float("-inf"))
        logits = torch.cat([lt[:, None], lc], dim=1)
        return F.cross_entropy(logits, torch.zeros_like(t), reduction="mean")
    B = items.shape[0]
    ext = torch.cat([items, torch.zeros(B, 1, dtype=items.dtype)], dim=1)
    h = backbone(P, cfg, ext)[:, -1, :]
    E = P["head.weight"]
    reg = 0.5 * cfg["l2"] * (E ** 2).sum()
    t = inp["targets"]
    if loss == "softmax":
        return F.cross_entropy(h @ E.T, t, reduction="mean") + reg
    neg = inp["samples"]
    sp = (h * E[t]).sum(-1)
    sn = (h * E[neg]).sum(-1)
    if loss == "bpr":
        return F.softplus(-(sp - sn)).mean() + reg
    assert loss == "bce"
    return (F.softplus(-sp) + F.softplus(sn)).mean() + reg


def outputs(P, cfg, inp):
    items = inp["items"]
    with torch.no_grad():
        if cfg["kind"] == 1:
            h = backbone(P, cfg, items)[:, -1, :]
            s = h @ P["head.weight"].T + P["head.bias"]
            s[:, 0] = float("-inf")
        else:
            B = items.shape[0]
            ext = torch.cat([items, torch.zeros(B, 1, dtype=items.dtype)], dim=1)
            h = backbone(P, cfg, ext)[:, -1, :]
            s = h @ P["head.weight"].T
    return h, s


# ------------------------------------------------------------------ params --
def param_names(cfg):
    names = ["embedding"]
    for b in range(len(cfg["dilations"])):
        names += ["block%d.%s" % (b, n) for n in
                  ("ln1.gain", "ln1.bias", "conv1.weight", "ln2.gain", "ln2.bias", "conv2.weight")]
    names.append("head.weight")
    if cfg["kind"] == 1:
        names.append("head.bias")
    return names


def make_params(cfg, rs):
    V, C, K = cfg["vocab_size"], cfg["channels"], cfg["kernel_width"]
    n = cfg["n_targets"]

    def f32(a):  # the C model stores float32: describe exactly that model
        return torch.tensor(np.asarray(a, dtype=np.float32).astype(np.float64))

    P = {"embedding": f32(rs.normal(0, 0.3, (V, C)))}
    for b in range(len(cfg["dilations"])):
        for ln in ("ln1", "ln2"):
            P["block%d.%s.gain" % (b, ln)] = f32(1.0 + rs.normal(0, 0.1, C))
            P["block%d.%s.bias" % (b, ln)] = f32(rs.normal(0, 0.1, C))
        for cv in ("conv1", "conv2"):
            P["block%d.%s.weight" % (b, cv)] = f32(rs.normal(0, 0.3, (K, C, C)))
    P["head.weight"] = f32(rs.normal(0, 0.3, (n, C)))
    if cfg["kind"] == 1:
        P["head.bias"] = f32(rs.normal(0, 0.3, n))
    return {k: P[k] for k in param_names(cfg)}


def make_items(cfg, rs, pads):
    V = cfg["vocab_size"]
    rows = []
    for p in pads:
        rows.append([0] * p + list(rs.randint(1, V, cfg["seq_len"] - p)))
    return torch.tensor(rows, dtype=torch.int64)


# -------------------------------------------------------------------- checks --
def check_conv(rs):
    for (K, d, T) in [(3, 1, 7), (3, 2, 7), (2, 4, 9), (3, 4, 5), (1, 3, 4)]:
        x = torch.tensor(rs.normal(0, 1, (2, T, 5)))
        w = torch.tensor(rs.normal(0, 1, (K, 5, 4)))
        a = causal_conv(x, w, d)
        b = conv_ref_torch(x, w, d)
        assert torch.allclose(a, b, rtol=1e-12, atol=1e-12), (K, d, T)
        # explicit formula on one element
        t, o = T - 1, 2
        v = sum(float(x[1, t - (K - 1 - j) * d, i] * w[j, i, o])
                for j in range(K) for i in range(5) if t - (K - 1 - j) * d >= 0)
        assert abs(v - float(a[1, t, o])) < 1e-12


def check_fd(P, cfg, inp, grads, rs):
    """Central differences on a few entries of a few tensors."""
    for name in ("embedding", "block0.conv1.weight", "block1.ln2.gain", "head.weight"):
        flat = P[name].view(-1)
        g = grads[name].view(-1)
        idx = [int(i) for i in rs.choice(flat.numel(), 3, replace=False)]
        if name == "embedding":  # make sure a used row is checked
            idx[0] = int(inp["items"][0, -2]) * cfg["channels"]
        for i in idx:
            h = 1e-6
            old = float(flat[i])
            with torch.no_grad():
                flat[i] = old + h
                lp = float(loss_fn(P, cfg, inp))
                flat[i] = old - h
                lm = float(loss_fn(P, cfg, inp))
                flat[i] = old
            fd = (lp - lm) / (2 * h)
            assert abs(fd - float(g[i])) <= 1e-6 * max(1.0, abs(fd)), (name, i, fd, float(g[i]))


# --------------------------------------------------------------------- write --
def fmt_tensor(name, t):
    t = torch.as_tensor(t)
    if t.dtype in (torch.int64, torch.int32):
        dtype, vals = "i64", " ".join(str(int(v)) for v in t.reshape(-1).tolist())
    else:
        dtype = "f64"
        vals = " ".join("-inf" if v == float("-inf") else "%.17g" % v
                        for v in t.reshape(-1).tolist())
    dims = " ".join(str(s) for s in t.shape)
    head = "tensor %s %s %d%s" % (name, dtype, t.dim(), (" " + dims) if dims else "")
    return head + "\n" + vals + "\n"


def make_case(name, cfg, seed, pads=(3, 1, 0), samples=None, tries=None):
    rs = np.random.RandomState(seed)
    cfg = dict(cfg)
    cfg.setdefault("batch", len(pads))
    cfg.setdefault("seq_len", 7)
    if cfg["kind"] == 1:
        cfg["n_targets"] = cfg["vocab_size"]
    P = make_params(cfg, rs)
    inp = {"items": make_items(cfg, rs, pads)}
    if cfg["kind"] == 1:
        t = inp["items"][:, 1:]
        assert (t == 0).any(), "want a padded target"
        if cfg["loss"] == "sampled_softmax":
            inp["samples"] = torch.tensor(samples, dtype=torch.int64)
            inp["tries"] = torch.tensor(tries, dtype=torch.int64)
            assert len(set(samples)) == len(samples) and min(samples) >= 1
            assert max(samples) < cfg["vocab_size"] and tries >= len(samples)
            assert set(samples) & set(t[t != 0].tolist()), "want an accidental hit"
            cfg["negatives"] = len(samples)
    else:
        n, B = cfg["n_targets"], cfg["batch"]
        tg = rs.randint(0, n, B)
        inp["targets"] = torch.tensor(tg, dtype=torch.int64)
        if cfg["loss"] in ("bpr", "bce"):
            neg = [(int(a) + 1 + rs.randint(0, n - 1)) % n for a in tg]
            assert all(a != b for a, b in zip(tg, neg))
            inp["samples"] = torch.tensor(neg, dtype=torch.int64)

    for p in P.values():
        p.requires_grad_(True)
    loss = loss_fn(P, cfg, inp)
    grads = dict(zip(P.keys(), torch.autograd.grad(loss, list(P.values()))))
    check_fd(P, cfg, inp, grads, rs)
    uv, sc = outputs(P, cfg, inp)

    out = ["# libconure golden fixture '%s', written by tests/golden/make_golden.py\n" % name,
           "# (PyTorch %s, float64); format described at the top of that script.\n"
           % torch.__version__]
    keys = ["case", "vocab_size", "channels", "kernel_width", "dilations", "block_order",
            "kind", "n_targets", "loss", "l2", "negatives", "batch", "seq_len"]
    cfg["case"] = name
    for k in keys:
        if k not in cfg:
            continue
        v = cfg[k]
        if k == "dilations":
            v = ",".join(str(d) for d in v)
        elif k == "l2":
            v = "%.17g" % v
        out.append("config %s %s\n" % (k, v))
    for k, p in P.items():
        out.append(fmt_tensor(k, p.detach()))
    for k in ("items", "targets", "samples", "tries"):
        if k in inp:
            out.append(fmt_tensor(k, inp[k]))
    out.append(fmt_tensor("loss", loss.detach()))
    for k, g in grads.items():
        out.append(fmt_tensor("grad." + k, g))
    out.append(fmt_tensor("user_vectors", uv))
    out.append(fmt_tensor("scores", sc))
    path = os.path.join(HERE, name + ".txt")
    with open(path, "w") as f:
        f.write("".join(out))
    print("%-26s loss %.9f  %6d bytes" % (name, float(loss), os.path.getsize(path)))


def main():
    check_conv(np.random.RandomState(7))
    base = dict(vocab_size=13, channels=8, kernel_width=3, dilations=[1, 2], l2=0.0)
    make_case("nextitem_softmax_pre", dict(base, block_order="pre_norm", kind=1,
                                           loss="softmax"), seed=101)
    make_case("nextitem_softmax_post", dict(base, block_order="post_norm", kind=1,
                                            loss="softmax"), seed=102)
    # sampled softmax: candidates chosen to hit some targets (accidental hits)
    rs = np.random.RandomState(103)
    cfg = dict(base, block_order="pre_norm", kind=1, loss="sampled_softmax")
    # peek at the items the case will draw, to include two of its targets
    tmp = dict(cfg, batch=3, seq_len=7, n_targets=13)
    make_params(tmp, rs)
    t = make_items(tmp, rs, (3, 1, 0))[:, 1:]
    tv = sorted(set(t[t != 0].tolist()))
    cand = [tv[0], tv[-1]]
    for c in (1, 4, 7, 10, 12, 2, 3):
        if len(cand) < 5 and c not in cand:
            cand.append(c)
    make_case("nextitem_sampled_pre", cfg, seed=103, samples=cand, tries=9)
    make_case("itemrec_bpr_pre", dict(base, block_order="pre_norm", kind=2, n_targets=6,
                                      loss="bpr", l2=0.05), seed=104)
    make_case("cls_bce_pre_k2", dict(base, kernel_width=2, block_order="pre_norm", kind=3,
                                     n_targets=4, loss="bce", l2=0.02), seed=105,
              pads=(2, 0, 5))
    make_case("cls_softmax_post", dict(base, block_order="post_norm", kind=3, n_targets=5,
                                       loss="softmax", l2=0.03), seed=106)


if __name__ == "__main__":
    main()

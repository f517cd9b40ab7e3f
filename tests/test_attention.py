"""Self-attention (sagan/attention.py): the paper's formula, rows that are distributions, hooks that
capture every layer's maps and leave nothing behind, and the options: each its formula, each doing what
it is for, and none of them changing an export made before they existed."""
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from safetensors.torch import load_file
from torch import nn

from sagan.attention import SelfAttention, capture_attention, positional_bias_off
from sagan.checkpoint import load_generator
from sagan.networks import Generator
from sagan.sampling import to_uint8
from tests.factories import tiny_model


@pytest.mark.parametrize("pool", [False, True])
def test_rows_sum_to_one_and_gamma_starts_at_zero(pool):
    attn = SelfAttention(32, pool=pool)
    x = torch.randn(2, 32, 8, 8)
    assert attn.gamma.item() == 0
    with capture_attention(attn) as maps:
        y = attn(x)
    assert torch.equal(y, x)  # gamma 0: the block starts as the identity
    (m,) = maps
    keys = 16 if pool else 64
    assert m.weights.shape == (2, 64, keys) and m.key_grid == ((4, 4) if pool else (8, 8))
    assert torch.allclose(m.weights.sum(-1), torch.ones(2, 64), atol=1e-5)


def test_capture_sees_every_layer_and_leaves_no_hooks():
    g = Generator(tiny_model(g_attn=(8, 16)))
    with capture_attention(g) as maps:
        g(torch.randn(1, 8))
    assert [(m.name, m.resolution, m.weights.shape[1]) for m in maps] == [("attn.8", 8, 64), ("attn.16", 16, 256)]
    assert all(not a.attend._forward_hooks for a in g.attn.values())


def test_attention_changes_output_once_gamma_is_set():
    attn = SelfAttention(16)
    with torch.no_grad():
        attn.gamma.fill_(0.5)
    x = torch.randn(1, 16, 4, 4)
    assert not torch.allclose(attn(x), x)


@pytest.mark.parametrize("pool", [False, True])
def test_forward_is_the_papers_formula(pool):
    """o_j = sum_i softmax_i(q_j . k_i) v_i, y = x + gamma * o (values 2x2 max-pooled and projected
    back to C channels when pooled), written out with einsum."""
    torch.manual_seed(0)
    attn = SelfAttention(16, pool=pool).eval()  # eval: .weight is the spectrally normalised weight forward uses
    attn.gamma.data.fill_(0.7)
    x = torch.randn(2, 16, 8, 8)

    def conv(module, t):
        return torch.einsum("oc,bchw->bohw", module.weight[:, :, 0, 0], t)
    q, k, v = conv(attn.query, x), conv(attn.key, x), conv(attn.value, x)
    if pool:
        k, v = F.max_pool2d(k, 2), F.max_pool2d(v, 2)
    weights = torch.einsum("bcj,bci->bji", q.flatten(2), k.flatten(2)).softmax(dim=-1)  # query j over key i
    o = torch.einsum("bji,bci->bcj", weights, v.flatten(2)).reshape(2, -1, 8, 8)
    if pool:
        o = conv(attn.out, o)
    torch.testing.assert_close(attn(x), x + 0.7 * o)


# --- The options (issue 20): defaults are today's block, each option does what it says. ---

def test_defaults_are_todays_block_parameter_for_parameter():
    attn = SelfAttention(32, pool=True)
    assert sorted(name for name, _ in attn.named_parameters()) == sorted(
        ["gamma"] + [f"{m}.parametrizations.weight.original" for m in ("query", "key", "value", "out")])
    assert not list(attn.buffers(recurse=False))


def test_an_export_made_before_the_options_renders_as_it_did():
    """tests/data/old_tiny*.safetensors were written by the attention of commit 1402490 (before the options):
    a tiny exported generator (conftest's tiny_checkpoint recipe) and, for latents drawn from a generator seeded
    1, its faces and attention maps, computed on a 2-core AMD EPYC (AVX-512) with 2 threads. The same pixels come
    out; the floats agree to float32 rounding, not bit for bit, since another CPU's kernels (an Intel Xeon's AMX
    among them) round differently: the same code there differs from the saved faces by 2e-6."""
    data = Path(__file__).parent / "data"
    saved = load_file(data / "old_tiny_outputs.safetensors")
    g = load_generator(data / "old_tiny.safetensors")
    assert (g.cfg.attn_dnl, g.cfg.attn_cosine, g.cfg.attn_rel_pos, g.cfg.attn_heads, g.cfg.attn_gamma_init) == \
        (False, False, False, 1, 0.0)
    threads = torch.get_num_threads()
    torch.set_num_threads(2)  # the kernels' split over threads changes the last bits
    try:
        with torch.inference_mode(), capture_attention(g) as maps:
            faces = g(saved["z"])
    finally:
        torch.set_num_threads(threads)
    np.testing.assert_array_equal(to_uint8(faces), to_uint8(saved["faces"]))
    torch.testing.assert_close(faces, saved["faces"], rtol=0, atol=1e-5)
    torch.testing.assert_close(maps[0].weights, saved["attn.8"], rtol=0, atol=1e-5)
    torch.testing.assert_close(maps[1].weights, saved["attn.16"], rtol=0, atol=1e-5)


def _reference(attn: SelfAttention, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """(weights (B, H, N, M), output) of the options written out with einsum, one head at a time."""
    def conv(module, t):
        return torch.einsum("oc,bchw->bohw", module.weight[:, :, 0, 0], t)
    b, c, h, w = x.shape
    heads = attn.heads
    q, k, v = conv(attn.query, x).flatten(2), conv(attn.key, x), conv(attn.value, x)
    if attn.pool:
        k, v = F.max_pool2d(k, 2), F.max_pool2d(v, 2)
    k, v = k.flatten(2), v.flatten(2)
    q, k, v = (t.reshape(b, heads, -1, t.shape[-1]) for t in (q, k, v))  # (B, H, d, positions)
    if attn.whiten:
        q, k = q - q.mean(-1, keepdim=True), k - k.mean(-1, keepdim=True)
    if attn.cosine:
        q, k = q / q.norm(dim=2, keepdim=True), k / k.norm(dim=2, keepdim=True)
    logits = torch.einsum("bhdn,bhdm->bhnm", q, k)
    if attn.cosine:
        logits = logits * attn.logit_scale.exp().clamp(max=100).view(1, heads, 1, 1)
    if attn.use_rel_pos:
        stride = 2 if attn.pool else 1
        for n in range(h * w):
            for m in range(k.shape[-1]):
                ky, kx = divmod(m, w // stride)
                logits[:, :, n, m] += attn.rel_pos[:, n // w - ky * stride + h - 1, n % w - kx * stride + w - 1]
    weights = logits.softmax(-1)
    if attn.dnl:
        unary = conv(attn.unary, x)
        unary = F.max_pool2d(unary, 2) if attn.pool else unary
        weights = (weights + unary.flatten(2).softmax(-1).unsqueeze(2)) / 2
    o = torch.einsum("bhnm,bhcm->bhcn", weights, v).reshape(b, -1, h, w)
    if attn.pool:
        o = conv(attn.out, o)
    return weights, x + attn.gamma * o


@pytest.mark.parametrize("pool", [False, True])
@pytest.mark.parametrize("options", [dict(dnl=True), dict(whiten=True), dict(cosine=True), dict(rel_pos=True),
                                     dict(heads=2), dict(whiten=True, cosine=True, heads=2, cosine_scale=20.0),
                                     dict(dnl=True, cosine=True, rel_pos=True, heads=2)],
                         ids=["dnl", "whiten", "cosine", "rel_pos", "heads", "whiten_cosine", "all"])
def test_each_option_is_its_formula_and_the_hook_sees_the_weights_a_query_attends_with(pool, options):
    torch.manual_seed(0)
    attn = SelfAttention(32, pool=pool, grid=8, gamma_init=0.7, **options).eval()
    x = torch.randn(2, 32, 8, 8)
    with capture_attention(attn) as maps:
        y = attn(x)
    weights, expected = _reference(attn, x)
    (m,) = maps
    got = m.weights if attn.heads > 1 else m.weights.unsqueeze(1)
    assert m.weights.dim() == (4 if attn.heads > 1 else 3)
    torch.testing.assert_close(got, weights.detach())
    torch.testing.assert_close(y, expected)
    torch.testing.assert_close(got.sum(-1), torch.ones_like(got[..., 0]))


def test_gamma_starts_at_its_initial_value():
    attn = SelfAttention(16, gamma_init=0.25)
    assert attn.gamma.item() == 0.25 and attn.gamma.shape == (1,)


class _PlusConstant(nn.Module):
    """A query projection that adds the same vector at every position."""

    def __init__(self, projection: nn.Module, shift: torch.Tensor):
        super().__init__()
        self.projection, self.shift = projection, shift

    def forward(self, x):
        return self.projection(x) + self.shift.view(1, -1, 1, 1)


@pytest.mark.parametrize("options, whitened", [(dict(dnl=True), True), (dict(whiten=True), True),
                                               (dict(whiten=True, cosine=True), True), ({}, False),
                                               (dict(cosine=True), False)])
def test_whitened_pairwise_term_ignores_a_vector_added_to_every_query(options, whitened):
    """Whitening removes the query-independent part of the logits: q_i + c attends as q_i does."""
    torch.manual_seed(0)
    attn = SelfAttention(32, **options).eval()
    x = torch.randn(2, 32, 8, 8)
    with capture_attention(attn) as maps:
        attn(x)
        attn.query = _PlusConstant(attn.query, 5 * torch.randn(4))
        attn(x)
    same = torch.allclose(maps[0].weights, maps[1].weights, atol=1e-6)
    assert same == whitened


def test_whitened_logits_favour_no_key_for_every_query():
    """With whitened dot-product logits each key's logits sum to zero over the queries, so the log of the
    weights, summed over queries, is the same for every key up to the rows' normalisers: no key wins every row.
    A plain block given keys that all share one strong direction and queries that agree does favour one key."""
    torch.manual_seed(0)
    x = torch.randn(1, 32, 8, 8) + 3 * torch.randn(1, 32, 1, 1)  # a shared component: every query alike
    for whiten in (True, False):
        attn = SelfAttention(32, whiten=whiten).eval()
        with torch.no_grad():
            attn.query.parametrizations.weight.original.mul_(30)  # sharp logits despite spectral norm
        with capture_attention(attn) as maps:
            attn(x)
        log_weights = maps[0].weights[0].log()                    # (N, M)
        per_key = (log_weights - log_weights.mean(1, keepdim=True)).sum(0)
        if whiten:
            torch.testing.assert_close(per_key, torch.zeros_like(per_key), atol=1e-3, rtol=0)
        else:
            assert per_key.abs().max() > 1


def test_cosine_logits_are_bounded_by_the_clamped_scale():
    """Cosine weights ignore the size of the features (a dot product's sharpen as they grow), and a scale
    learned past 100 acts as 100."""
    torch.manual_seed(0)
    attn, plain = SelfAttention(32, cosine=True).eval(), SelfAttention(32).eval()
    assert attn.logit_scale.exp().tolist() == pytest.approx([10.0])
    sharper = SelfAttention(32, heads=2, cosine=True, cosine_scale=20)
    assert sharper.logit_scale.exp().tolist() == pytest.approx([20, 20])
    x = torch.randn(2, 32, 8, 8)
    with capture_attention(attn) as maps, capture_attention(plain) as plain_maps:
        for scale in (1, 30):
            attn(scale * x), plain(scale * x)
    torch.testing.assert_close(maps[0].weights, maps[1].weights)
    assert not torch.allclose(plain_maps[0].weights, plain_maps[1].weights, atol=1e-3)
    logits = maps[0].weights.log()
    assert float((logits.amax(-1) - logits.amin(-1)).max()) <= 2 * 10 + 1e-3  # cos in [-1, 1] times 10
    maps.clear()
    with torch.no_grad(), capture_attention(attn) as maps:
        for scale in (100.0, 1e4):
            attn.logit_scale.fill_(torch.tensor(scale).log())
            attn(x)
    assert torch.equal(maps[0].weights, maps[1].weights)


def test_a_fixed_cosine_scale_is_not_trained_and_saves_like_a_learned_one():
    """--attn-cosine-fixed: the scale is a buffer at its start, which no optimizer sees, under the same
    state_dict key as the learned one, so either module loads the other's weights."""
    torch.manual_seed(0)
    fixed = SelfAttention(32, whiten=True, cosine=True, cosine_scale=20, cosine_fixed=True)
    learned = SelfAttention(32, whiten=True, cosine=True, cosine_scale=20)
    learned.load_state_dict(fixed.state_dict())
    assert fixed.state_dict().keys() == learned.state_dict().keys()
    assert "logit_scale" not in dict(fixed.named_parameters()) and "logit_scale" in dict(learned.named_parameters())
    for attn in (fixed, learned):
        attn.gamma.data.fill_(1.0)
        attn(torch.randn(2, 32, 8, 8)).square().sum().backward()
    assert learned.logit_scale.grad.abs().item() > 0
    assert fixed.logit_scale.exp().tolist() == pytest.approx([20.0]) and fixed.logit_scale.grad is None


@pytest.mark.parametrize("pool", [False, True])
def test_relative_bias_moves_the_map_with_the_query_and_switching_it_off_removes_that(pool):
    """Constant content gives every query the same logits; a bias peaked at the offsets from a key cell's
    top-left query cell to its own query cells makes each query look at the key cell it lies in, and with
    the bias off every row is uniform again."""
    attn = SelfAttention(32, pool=pool, rel_pos=True, grid=8).eval()
    stride = 2 if pool else 1
    with torch.no_grad():
        attn.rel_pos.zero_()
        attn.rel_pos[:, 7:7 + stride, 7:7 + stride] = 10.0  # offsets 0..stride-1 (index 7 is offset 0)
    x = torch.randn(1, 32, 1, 1).expand(1, 32, 8, 8)
    with capture_attention(attn) as maps:
        attn(x)
        with positional_bias_off(attn):
            attn(x)
        attn(x)
    biased, content, again = (m.weights[0] for m in maps)
    ys, xs = torch.meshgrid(torch.arange(8), torch.arange(8), indexing="ij")
    own_cell = (ys // stride) * (8 // stride) + xs // stride
    assert torch.equal(biased.argmax(-1), own_cell.flatten())
    torch.testing.assert_close(content, torch.full_like(content, 1 / content.shape[-1]))
    assert torch.equal(again, biased) and attn.use_rel_pos  # switched back on after the block


def test_heads_are_captured_one_map_each_with_rows_summing_to_one():
    torch.manual_seed(0)
    g = Generator(tiny_model(conv_dim=16, attn_heads=2, g_attn=(8, 16)))
    with capture_attention(g) as maps:
        g(torch.randn(3, 8))
    assert [tuple(m.weights.shape) for m in maps] == [(3, 2, 64, 16), (3, 2, 256, 64)]
    for m in maps:
        torch.testing.assert_close(m.weights.sum(-1), torch.ones(m.weights.shape[:-1]))
        assert not torch.allclose(m.weights[:, 0], m.weights[:, 1])


def test_heads_that_do_not_divide_the_channels_are_refused_naming_the_flag():
    with pytest.raises(ValueError, match="--attn-heads 3"):
        SelfAttention(64, heads=3)
    with pytest.raises(ValueError, match="--attn-heads 3 must divide --conv-dim / 8"):
        tiny_model(conv_dim=16, attn_heads=3)


@pytest.mark.parametrize("options", [dict(attn_dnl=True, attn_cosine=True, attn_rel_pos=True, attn_heads=2,
                                          attn_gamma_init=0.5),
                                     dict(attn_whiten=True, attn_cosine=True, attn_heads=2, attn_cosine_scale=20.0,
                                          attn_cosine_fixed=True)],
                         ids=["dnl", "whiten"])
def test_an_export_carries_the_options_and_renders_as_the_generator_did(tmp_path, options):
    from sagan.checkpoint import export_generator, read_export_metadata
    torch.manual_seed(0)
    g = Generator(tiny_model(conv_dim=16, **options)).eval()
    export_generator(g, tmp_path / "g.safetensors", standing_batches=0)  # the statistics as they are
    assert '"attn_heads": 2' in read_export_metadata(tmp_path / "g.safetensors")["config"]
    loaded = load_generator(tmp_path / "g.safetensors")
    assert loaded.cfg == g.cfg
    assert all(m.whiten for m in loaded.attn.values())
    z = torch.randn(2, 8)
    with torch.inference_mode():
        assert torch.equal(loaded(z), g(z))

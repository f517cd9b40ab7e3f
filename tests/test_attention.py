"""Self-attention (sagan/attention.py): the paper's formula, rows that are distributions, and hooks that
capture every layer's maps and leave nothing behind."""
import pytest
import torch
import torch.nn.functional as F

from sagan.attention import SelfAttention, capture_attention
from sagan.networks import Generator
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
    assert all(not a.softmax._forward_hooks for a in g.attn.values())


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

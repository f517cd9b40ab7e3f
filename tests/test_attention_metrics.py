"""Query dependence of attention (sagan/attention_metrics.py): closed forms, a brute-force mutual information, heads."""
import dataclasses
import math

import pytest
import torch

from sagan import attention_metrics as am


def random_rows(*shape, seed=0, sharpness=3.0):
    gen = torch.Generator().manual_seed(seed)
    return torch.softmax(sharpness * torch.randn(*shape, generator=gen, dtype=torch.float64), dim=-1)


def brute_force_mi(rows: torch.Tensor) -> float:
    """I(Q;K) of one face's (N, M) rows from the joint p(q, k) = row_q(k) / N."""
    joint = rows / rows.shape[0]
    p_q, p_k = joint.sum(1, keepdim=True), joint.sum(0, keepdim=True)
    inside = joint > 0
    return float((joint[inside] * torch.log2(joint[inside] / (p_q * p_k)[inside])).sum())


def test_uniform_rows_carry_no_information_and_have_full_entropy():
    w = torch.full((2, 16, 4), 0.25)
    assert am.mutual_information(w).item() == pytest.approx(0.0, abs=1e-12)
    assert am.row_entropy(w).item() == pytest.approx(2.0)
    assert am.pairwise_distance(w).item() == pytest.approx(0.0, abs=1e-12)


def test_each_query_on_its_own_key_carries_all_bits():
    w = torch.eye(16).expand(3, 16, 16)
    assert am.mutual_information(w).item() == pytest.approx(4.0)
    assert am.row_entropy(w).item() == pytest.approx(0.0, abs=1e-9)
    assert am.pairwise_distance(w).item() == pytest.approx(1.0)
    report = am.layer_report(w, (4, 4), (4, 4), image_size=32)
    assert report["mi_normalised"] == pytest.approx(1.0)
    assert report["mean_distance_px"] == pytest.approx(0.0)


def test_mutual_information_matches_the_joint_distribution():
    w = random_rows(4, 12, 9)
    expected = sum(brute_force_mi(face) for face in w) / len(w)
    assert am.mutual_information(w).item() == pytest.approx(expected, rel=1e-9)
    assert 0 < expected < math.log2(9)


def test_faces_are_measured_one_by_one():
    # Within a face every query attends alike; the faces differ. Pooled over faces this would be 1 bit.
    w = torch.zeros(2, 8, 2)
    w[0, :, 0] = 1
    w[1, :, 1] = 1
    assert am.mutual_information(w).item() == pytest.approx(0.0, abs=1e-12)
    assert am.pairwise_distance(w).item() == pytest.approx(0.0, abs=1e-12)


def test_pairwise_distance_is_the_mean_over_pairs_of_distinct_queries():
    w = random_rows(2, 5, 7, seed=3)
    expected = []
    for face in w:
        unit = face / face.norm(dim=-1, keepdim=True)
        cos = unit @ unit.T
        expected.append(float((1 - cos)[~torch.eye(5, dtype=torch.bool)].mean()))
    assert am.pairwise_distance(w).item() == pytest.approx(sum(expected) / 2, rel=1e-9)


def test_mean_distance_in_pixels_of_the_image():
    # A 2x2 query grid on a 16 px image, keys on a 1x2 grid: every query attends to the right key cell.
    w = torch.zeros(1, 4, 2)
    w[0, :, 1] = 1
    query_centres = am.cell_centres((2, 2), 16)        # (4, 4), (4, 12), (12, 4), (12, 12)
    key = torch.tensor([8.0, 12.0], dtype=torch.float64)
    expected = float((query_centres - key).norm(dim=1).mean())
    assert am.mean_distance(w, (2, 2), (1, 2), 16).item() == pytest.approx(expected)
    assert expected == pytest.approx((4 + 4 + math.hypot(4, 8) * 2) / 4)


def test_heads_are_measured_separately_then_averaged():
    uniform = torch.full((2, 1, 16, 16), 1 / 16)
    one_hot = torch.eye(16).expand(2, 1, 16, 16)
    w = torch.cat([uniform, one_hot], dim=1)
    assert am.mutual_information(w).tolist() == pytest.approx([0.0, 4.0], abs=1e-9)
    # The heads' mean map would carry less: measuring it instead of each head is the mistake this guards.
    assert am.mutual_information(w.mean(1)).item() < 4.0 - 1.0
    report = am.layer_report(w, (4, 4), (4, 4), image_size=16)
    assert report["mi_bits"] == pytest.approx(2.0)
    assert [h["mi_bits"] for h in report["heads"]] == pytest.approx([0.0, 4.0], abs=1e-9)
    assert "heads" not in am.layer_report(one_hot[:, 0], (4, 4), (4, 4), image_size=16)


def test_shapes_that_do_not_fit_are_refused_with_their_shape():
    with pytest.raises(ValueError, match=r"\(B, N, M\) or \(B, H, N, M\), not \(4, 4\)"):
        am.row_entropy(torch.full((4, 4), 0.25))
    with pytest.raises(ValueError, match="do not match"):
        am.mean_distance(torch.full((1, 4, 4), 0.25), (2, 2), (1, 2), 16)


def test_generator_report_measures_each_layer_over_the_first_seeds_whatever_the_batch(tiny_checkpoint):
    from sagan.checkpoint import load_generator
    g = load_generator(tiny_checkpoint).eval()
    whole = am.generator_report(g, num_faces=6)
    assert set(whole) == {"attn.8", "attn.16"}
    batched = am.generator_report(g, num_faces=6, batch_size=4)
    keys = {"attn.8": 16, "attn.16": 64}   # pooled keys: a quarter of the 8x8 and 16x16 maps
    for name, report in whole.items():
        assert report == pytest.approx(batched[name], rel=1e-5)
        assert 0 < report["mi_bits"] <= math.log2(keys[name])
    # Seeds 0..5 and no others: a seventh face changes the figures.
    assert am.generator_report(g, num_faces=7)["attn.8"]["mi_bits"] != pytest.approx(whole["attn.8"]["mi_bits"])


def test_a_positional_bias_is_also_measured_switched_off():
    """Bits a local bias makes are reported beside those of the content alone."""
    from sagan.attention import positional_bias_off
    from sagan.config import ModelConfig
    from sagan.networks import Generator
    torch.manual_seed(0)
    g = Generator(ModelConfig(image_size=32, z_dim=8, conv_dim=8, g_attn=(8, 16), d_attn=(8,),
                              attn_rel_pos=True, attn_whiten=False, attn_cosine=False)).eval()
    with torch.no_grad():
        g.attn["16"].rel_pos[:, 15:17, 15:17] = 8.0   # each query looks at the key cell it lies in
    report = am.generator_report(g, num_faces=4)
    layer = report["attn.16"]
    assert layer["mi_bits"] > 5 and layer["mi_bits_no_pos"] < 0.5
    assert layer["mean_distance_px"] < layer["mean_distance_px_no_pos"]
    with positional_bias_off(g):
        assert am.generator_report(g, num_faces=4)["attn.16"]["mi_bits"] == pytest.approx(layer["mi_bits_no_pos"])
    plain = am.generator_report(Generator(dataclasses.replace(g.cfg, attn_rel_pos=False)).eval(), 4)
    assert "mi_bits_no_pos" not in plain["attn.16"]


def test_report_scalars_and_lines_give_every_measure_of_every_layer():
    report = {"attn.8": {"mi_bits": 1.0, "mi_normalised": 0.25, "row_entropy_bits": 2.0, "pairwise_distance": 0.5,
                         "mean_distance_px": 9.0, "mi_bits_no_pos": 0.5, "mean_distance_px_no_pos": 10.0,
                         "heads": [{"mi_bits": 1.0}, {"mi_bits": 1.0}]}}
    scalars = am.report_scalars(report)
    assert scalars == {f"attention/attn.8/{k}": v for k, v in report["attn.8"].items() if k != "heads"}
    (line,) = am.report_lines(report)
    assert line.startswith("attn.8: I(Q;K) 1.00 bits (0.25 of the most)") and "position bias off: 0.50 bits" in line

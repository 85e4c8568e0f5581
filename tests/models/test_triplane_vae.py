"""Triplane VAE: shapes, determinism, save/load, deformable attention, Lovasz loss, a few optimisation
steps, metrics and the training entry point (tiny configs, CPU, seconds)."""

import json

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from xscene_core import semantics
from xscene_core.eval.occupancy_metrics import OccupancyConfusion, geometry_iou, miou
from xscene_core.models.lovasz import lovasz_softmax
from xscene_core.models.triplane_vae import PRESETS, Planes, TriplaneVAE, positional_encoding, voxel_centers
from xscene_core.types.occupancy import GridSpec, Occupancy, Triplane

SMALL = dict(grid_shape=(16, 16, 8), plane_shape=(8, 8, 8), embed_dim=4, encoder_channels=(8, 8), latent_channels=4,
             decoder_channels=8, num_offsets=2, mlp_width=32, mlp_depth=2, pe_freqs=3)


@pytest.fixture(autouse=True)
def one_thread():
    """Tiny tensors: one thread avoids oversubscribing a busy 2-core machine (several times faster)."""
    n = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(n)


def small_model(seed=0, **kw) -> TriplaneVAE:
    torch.manual_seed(seed)
    return TriplaneVAE(**{**SMALL, **kw})


def scene(shape=(16, 16, 8), seed=0) -> torch.Tensor:
    """A small structured volume: road and sidewalk ground, a building, a car, free above."""
    g = np.random.default_rng(seed)
    lab = np.full(shape, semantics.FREE, np.uint8)
    lab[:, :, 0] = semantics.ID["driveable_surface"]
    lab[:, : shape[1] // 4, 0] = semantics.ID["sidewalk"]
    x0 = int(g.integers(0, shape[0] - 5))
    lab[x0:x0 + 4, : shape[1] // 4, 1:6] = semantics.ID["manmade"]
    lab[shape[0] // 2:shape[0] // 2 + 3, shape[1] // 2:shape[1] // 2 + 2, 1:3] = semantics.ID["car"]
    return torch.from_numpy(lab)


def random_points(b, n, seed=0):
    return torch.rand(b, n, 3, generator=torch.Generator().manual_seed(seed)) * 2 - 1


def test_shapes():
    m = small_model().eval()
    labels = torch.stack([scene(seed=0), scene(seed=1)])
    planes = m.encode(labels)
    assert [tuple(p.shape) for p in planes] == [(2, 4, 8, 8), (2, 4, 8, 8), (2, 4, 8, 8)]
    assert all(p.abs().max() <= 1 for p in planes)  # tanh-bounded deterministic latent
    logits = m.decode(planes, random_points(2, 50))
    assert logits.shape == (2, 50, semantics.NUM_CLASSES)
    rec = m.reconstruct(labels, chunk_points=300)  # several chunks of points
    assert rec.shape == (2, 16, 16, 8) and rec.dtype == torch.uint8
    # one Triplane in, one occupancy out; the Triplane type checks the plane shapes
    tri = m.encode_occupancy(Occupancy(scene().numpy(), GridSpec((16, 16, 8))))
    assert isinstance(tri, Triplane) and tri.resolution == (8, 8, 8) and tri.channels == 4
    assert torch.equal(m.decode_volume(tri), rec[:1])
    assert torch.equal(Planes.from_triplanes(planes.to_triplanes()).xy, planes.xy)
    with pytest.raises(ValueError):
        m.encode(torch.zeros(1, 8, 8, 8, dtype=torch.long))


def test_plane_shapes_with_anisotropic_downsampling():
    m = small_model(plane_shape=(4, 8, 4))
    planes = m.encode(scene()[None])
    assert [tuple(p.shape[2:]) for p in planes] == [(4, 8), (4, 4), (8, 4)]
    with pytest.raises(ValueError):
        TriplaneVAE(**{**SMALL, "plane_shape": (6, 8, 8)})


def test_presets_build_with_the_papers_triplane():
    for name in ("tiny", "paper"):
        m = TriplaneVAE.from_preset(name)
        assert tuple(m.plane_shape) == (100, 100, 16) and tuple(m.grid_shape) == (200, 200, 16)
    assert PRESETS["paper"]["latent_channels"] == 16
    assert PRESETS["paper"]["mlp_width"] == 256 and PRESETS["paper"]["mlp_depth"] == 4
    with pytest.raises(ValueError):
        TriplaneVAE.from_preset("huge")


def test_tiny_preset_encodes_an_occ3d_volume():
    m = TriplaneVAE.from_preset("tiny").eval()
    with torch.no_grad():
        planes = m.encode(torch.full((1, 200, 200, 16), semantics.FREE, dtype=torch.uint8))
    assert [tuple(p.shape) for p in planes] == [(1, 8, 100, 100), (1, 8, 100, 16), (1, 8, 100, 16)]


def test_determinism_under_a_seed():
    a, b = small_model(seed=3).eval(), small_model(seed=3).eval()
    labels, pts = scene()[None], random_points(1, 64)
    with torch.no_grad():
        assert torch.equal(a.decode(a.encode(labels), pts), b.decode(b.encode(labels), pts))
    v = small_model(seed=3, variational=True)
    s1 = v.encode(labels, sample=True, generator=torch.Generator().manual_seed(7))
    s2 = v.encode(labels, sample=True, generator=torch.Generator().manual_seed(7))
    s3 = v.encode(labels, sample=True, generator=torch.Generator().manual_seed(8))
    assert torch.equal(s1.xy, s2.xy) and not torch.equal(s1.xy, s3.xy)


def test_save_load_round_trip(tmp_path):
    m = small_model(variational=True).eval()
    with torch.no_grad():  # perturb the zero-initialised offsets so every parameter matters
        m.attention.offsets.weight.normal_()
    m.save_pretrained(tmp_path)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["config.json", "model.safetensors"]
    assert json.loads((tmp_path / "config.json").read_text())["grid_shape"] == [16, 16, 8]
    m2 = TriplaneVAE.from_pretrained(tmp_path)
    labels, pts = scene()[None], random_points(1, 64)
    with torch.no_grad():
        assert torch.equal(m.decode(m.encode(labels), pts), m2.decode(m2.encode(labels), pts))
    with pytest.raises(ValueError):
        TriplaneVAE.from_pretrained(tmp_path / "missing")


def test_deformable_attention_zero_offsets_is_bilinear_sample():
    torch.manual_seed(0)
    m = small_model()
    att = m.attention
    feats = [torch.randn(2, 8, 8, 8), torch.randn(2, 8, 8, 8), torch.randn(2, 8, 8, 8)]
    pts = random_points(2, 40)
    pe = positional_encoding(pts, m.pe_freqs)
    with torch.no_grad():
        att.weights.weight.normal_()  # arbitrary softmax weights: they sum to one over identical samples
        out = att(feats, pts, pe)
        ref = 0
        for f, (r, c) in zip(feats, ((0, 1), (0, 2), (1, 2))):
            grid = pts[..., [c, r]][:, :, None, :]  # (x=col, y=row)
            ref = ref + F.grid_sample(f, grid, mode="bilinear", padding_mode="border", align_corners=False)[..., 0]
        torch.testing.assert_close(out, ref.transpose(1, 2), rtol=1e-5, atol=1e-6)
        # offsets that depend on the point move the samples and change the output
        att.offsets.weight.normal_(std=0.5)
        moved = att(feats, pts, pe)
        assert (moved - out).abs().max() > 1e-3


def test_voxel_centres_sample_their_own_plane_cell():
    # with a plane at the grid's resolution, a voxel centre reads exactly its cell (align_corners=False)
    m = small_model(plane_shape=(16, 16, 8))
    feats = [torch.arange(16 * 16, dtype=torch.float32).view(1, 1, 16, 16), torch.zeros(1, 1, 16, 8), torch.zeros(1, 1, 16, 8)]
    pts = voxel_centers((16, 16, 8))[None]
    out = m.attention(feats, pts, positional_encoding(pts, m.pe_freqs))[0, :, 0]
    idx = torch.arange(16 * 16 * 8)
    expect = (idx // (16 * 8)) * 16 + (idx // 8) % 16
    torch.testing.assert_close(out, expect.float())


def test_deformable_attention_output_reaches_decoder():
    m = small_model().eval()
    labels, pts = scene()[None], random_points(1, 64)
    with torch.no_grad():
        before = m.decode(m.encode(labels), pts)
        m.attention.offsets.weight.normal_(std=0.5)
        after = m.decode(m.encode(labels), pts)
    assert not torch.allclose(before, after)


def test_lovasz_softmax():
    labels = torch.tensor([0, 1, 2, 2, 1, 0, 3])
    perfect = F.one_hot(labels, 5).float()
    assert lovasz_softmax(perfect, labels).item() == 0.0
    logits = torch.randn(7, 5, requires_grad=True)
    loss = lovasz_softmax(logits.softmax(-1), labels)
    assert loss.item() > 0
    loss.backward()
    assert logits.grad is not None and logits.grad.abs().sum() > 0
    # a wrong but confident prediction is worse than a hesitant one
    wrong = F.one_hot((labels + 1) % 5, 5).float()
    assert lovasz_softmax(wrong, labels) > lovasz_softmax(torch.full((7, 5), 0.2), labels) > 0
    assert lovasz_softmax(perfect[:0], labels[:0]).item() == 0.0
    # ignored points do not count
    lab_ign = torch.cat([labels, torch.tensor([255])])
    probs = torch.cat([perfect, torch.full((1, 5), 0.2)])
    assert lovasz_softmax(probs, lab_ign, ignore_index=255).item() == 0.0


def test_a_few_steps_on_one_chunk_reduce_the_loss():
    from xscene_core.train.triplane_vae import TrainConfig, class_weights, make_batch, vae_loss

    lab = scene((16, 16, 8)).numpy()
    m = small_model(seed=1)
    cfg = TrainConfig(points=600, batch=1)
    w = class_weights([lab])
    opt = torch.optim.Adam(m.parameters(), lr=5e-3)
    batch = make_batch([lab], 0, cfg, m.grid_shape)
    first = None
    for _ in range(25):
        loss = vae_loss(m, *batch, w)["loss"]
        opt.zero_grad()
        loss.backward()
        opt.step()
        first = float(loss.detach()) if first is None else first
    final = float(vae_loss(m, *batch, w)["loss"].detach())
    assert final < 0.7 * first


def test_query_sampling_covers_occupied_near_and_far():
    from xscene_core.train.triplane_vae import sample_queries

    lab = scene((16, 16, 8))
    g = torch.Generator().manual_seed(0)
    idx = sample_queries(lab, 500, g, occupied_share=0.6, near_share=0.25)
    assert idx.shape == (500, 3)
    assert ((idx >= 0) & (idx < torch.tensor([16, 16, 8]))).all()
    vals = lab[idx[:, 0], idx[:, 1], idx[:, 2]]
    n_occ = int((lab != semantics.FREE).sum())
    assert int((vals != semantics.FREE).sum()) == min(n_occ, 300)
    # the same generator state gives the same points
    assert torch.equal(idx, sample_queries(lab, 500, torch.Generator().manual_seed(0)))


def test_metrics_identical_volumes():
    lab = scene().numpy()
    assert miou(lab, lab) == 1.0 and geometry_iou(lab, lab) == 1.0


def test_metrics_hand_made_case():
    F_, car, road = semantics.FREE, semantics.ID["car"], semantics.ID["driveable_surface"]
    gt = np.array([road, road, car, car, F_, F_])
    pred = np.array([road, car, car, F_, F_, road])
    # road: tp 1, fn 1 (->car), fp 1 (free->road): 1/3. car: tp 1, fn 1 (->free), fp 1 (road->car): 1/3
    assert miou(pred, gt) == pytest.approx(1 / 3)
    # geometry: occupied gt {0,1,2,3}, predicted occupied {0,1,2,5}: tp 3, fn 1, fp 1 -> 3/5
    assert geometry_iou(pred, gt) == pytest.approx(3 / 5)
    # classes absent from the ground truth are left out of the mean
    conf = OccupancyConfusion().add(pred, gt)
    assert np.isnan(conf.class_iou()[semantics.ID["bus"]])
    # a mask restricts the voxels counted
    mask = np.array([1, 1, 1, 0, 1, 0], bool)
    assert geometry_iou(pred, gt, mask) == 1.0
    assert miou(pred, gt, mask) == pytest.approx((1 / 2 + 1 / 2) / 2)


def test_training_entry_point_runs_and_resumes(tmp_path):
    from xscene_core.data.occ3d import write_labels_npz
    from xscene_core.train.triplane_vae import main

    g = np.random.default_rng(0)
    for i in range(2):
        lab = np.full((200, 200, 16), semantics.FREE, np.uint8)
        lab[:, :, 0] = g.integers(11, 15, size=(200, 200))
        write_labels_npz(tmp_path / "data" / "train" / f"c{i}" / "labels.npz", Occupancy(lab))
    common = ["--preset", "tiny", "--data", str(tmp_path / "data"), "--out", str(tmp_path / "run"), "--points", "2000",
              "--val-chunks", "0", "--log-every", "1", "--ckpt-every", "1", "--threads", "1"]
    main(common + ["--steps", "2"])
    assert (tmp_path / "run" / "checkpoint" / "model.safetensors").exists()
    assert (tmp_path / "run" / "final" / "config.json").exists()
    main(common + ["--steps", "3", "--resume"])
    lines = [json.loads(s) for s in (tmp_path / "run" / "log.jsonl").read_text().splitlines()]
    steps = [r["step"] for r in lines if "loss" in r]
    assert steps == [1, 2, 3]


def test_decoder_only_training_keeps_the_encoder_and_its_hash(tmp_path):
    from safetensors.torch import load_file

    from xscene_core.data.latent_dataset import vae_hash
    from xscene_core.data.occ3d import write_labels_npz
    from xscene_core.train.triplane_vae import main

    lab = np.full((200, 200, 16), semantics.FREE, np.uint8)
    lab[:, :, 0] = np.random.default_rng(1).integers(11, 15, size=(200, 200))
    write_labels_npz(tmp_path / "data" / "train" / "c0" / "labels.npz", Occupancy(lab))
    common = ["--preset", "tiny", "--data", str(tmp_path / "data"), "--points", "2000", "--val-chunks", "0",
              "--threads", "1", "--steps", "2", "--lr", "1e-2", "--warmup", "0"]
    main(common + ["--out", str(tmp_path / "a")])
    start = tmp_path / "a" / "final"
    with pytest.raises(SystemExit, match="--init"):
        main(common + ["--out", str(tmp_path / "bad"), "--freeze-encoder"])
    main(common + ["--out", str(tmp_path / "b"), "--init", str(start), "--freeze-encoder"])
    main([*common[:-6], "--steps", "3", "--lr", "1e-2", "--out", str(tmp_path / "b"), "--resume"])  # stays decoder-only
    before, after = load_file(str(start / "model.safetensors")), load_file(str(tmp_path / "b" / "final" / "model.safetensors"))
    m = TriplaneVAE.from_pretrained(start)
    enc = [k for k in before if m.is_encoder_parameter(k)]
    assert enc and all(torch.equal(before[k], after[k]) for k in enc)
    assert any(not torch.equal(before[k], after[k]) for k in before if k not in enc)  # the decoder did learn
    # the hash names the latent space: a new decoder keeps it, a new encoder changes it
    assert vae_hash(tmp_path / "b" / "final") == vae_hash(start)
    main(common + ["--out", str(tmp_path / "c"), "--init", str(start)])
    assert vae_hash(tmp_path / "c" / "final") != vae_hash(start)


def test_shipped_checkpoint_loads_and_decodes_ground_and_air():
    from pathlib import Path

    d = Path(__file__).resolve().parents[2] / "checkpoints" / "triplane_vae"
    if not (d / "model.safetensors").exists():
        pytest.skip("no shipped triplane VAE checkpoint")
    m = TriplaneVAE.from_pretrained(d)
    lab = torch.full((1, 200, 200, 16), semantics.FREE, dtype=torch.uint8)
    lab[..., 2] = semantics.ID["driveable_surface"]  # the road surface layer of the synthetic world
    planes = m.encode(lab)
    assert planes.xy.shape == (1, m.config["latent_channels"], 100, 100)
    # decode a column of points: the ground layer comes back occupied; below and above it is free
    z = torch.tensor([(2 * k + 1) / 16 - 1 for k in (2, 0, 8, 12)])
    pts = torch.stack([torch.zeros(4), torch.zeros(4), z], dim=-1)[None]
    pred = m.decode(planes, pts).argmax(-1)[0].tolist()
    assert [p != semantics.FREE for p in pred] == [True, False, False, False]


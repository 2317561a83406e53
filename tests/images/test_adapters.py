"""The image adapters against the networks' own predictions, converted by hand (THEORY.md section 1;
EDM preconditioning, Karras et al. 2022 Table 1). Tests that build diffusers networks skip without it."""
from __future__ import annotations

import math
import pathlib
import subprocess
import sys

import pytest
import torch
import torch.autograd.forward_ad as fwAD

from images import DiTAdapter, EDM2Precond, UNetAdapter, class_labels, edm_coefficients, forward_ad_compatible, tiny_dit, tiny_edm2, tiny_unet
from sampler.model import EpsModel, X0Model
from sampler.schedules import VPSchedule, sigma_to_abar

SCHEDULE = VPSchedule.standard().respace(10)  # levels keep their original training indices
CHANNELS = {"unet": 3, "dit": 4, "edm2": 4}
NAMES = list(CHANNELS)
DEVICES = ["cpu", pytest.param("cuda", marks=pytest.mark.skipif(not torch.cuda.is_available(), reason="no CUDA GPU"))]


@pytest.fixture(scope="module")
def diffusers():
    return pytest.importorskip("diffusers")


def build(name: str, **kw):
    if name == "unet":
        return tiny_unet(schedule=SCHEDULE, **kw)
    if name == "dit":
        return tiny_dit(schedule=SCHEDULE, **kw)
    if name == "edm2":
        return tiny_edm2(**kw)
    raise ValueError(name)


def level(name: str, k: int = 6) -> float:
    """A valid noise level: a schedule level for the discrete-time models, anything > 0 for EDM2."""
    return float(SCHEDULE.sigmas[k]) if name != "edm2" else 1.7


def raw_net(model):
    return model.net.net.unet if isinstance(model, X0Model) else getattr(model.net, "unet", None) or model.net.transformer


def by_hand(name: str, model, x: torch.Tensor, sigma: float, y: torch.Tensor) -> torch.Tensor:
    """The contract's x0_hat computed directly from the diffusers network's own output."""
    net = raw_net(model)
    if name == "edm2":
        sd = 0.5
        c_skip, c_out, c_in = sd**2 / (sigma**2 + sd**2), sigma * sd / math.sqrt(sigma**2 + sd**2), 1 / math.sqrt(sigma**2 + sd**2)
        c_noise = torch.full((x.shape[0],), math.log(sigma) / 4, dtype=x.dtype)
        return c_skip * x + c_out * net(c_in * x, c_noise, class_labels=y).sample
    k = int(torch.argmin((SCHEDULE.sigmas - sigma).abs()))
    abar = sigma_to_abar(sigma)
    t = torch.full((x.shape[0],), int(SCHEDULE.timesteps[k]), dtype=torch.long)
    if name == "unet":
        eps = net(math.sqrt(abar) * x, t, class_labels=y).sample
    else:
        eps = net(math.sqrt(abar) * x, timestep=t, class_labels=y).sample[:, : x.shape[1]]
    return x - sigma * eps


def sample_x(name: str, n: int = 3, size: int = 8, dtype=torch.float32, seed: int = 0) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    return torch.randn(n, CHANNELS[name], size, size, generator=g, dtype=dtype)


# --- without diffusers --------------------------------------------------------------------------------
def test_factories_name_the_images_extra_without_diffusers(monkeypatch):
    monkeypatch.setitem(sys.modules, "diffusers", None)  # makes `import diffusers` raise ImportError
    for factory in (tiny_unet, tiny_dit, tiny_edm2):
        with pytest.raises(ImportError, match=r"'images' extra"):
            factory()


def test_package_imports_without_diffusers():
    code = (
        "import sys\n"
        "import images, images.adapters\n"
        "assert 'diffusers' not in sys.modules, 'import images must not import diffusers'\n"
        "sys.modules['diffusers'] = None\n"
        "assert callable(images.tiny_unet)\n"
        "try:\n    images.tiny_dit()\nexcept ImportError as e:\n    assert 'images' in str(e)\n"
        "else:\n    raise SystemExit('no ImportError')\n"
    )
    root = pathlib.Path(__file__).resolve().parents[2]
    proc = subprocess.run([sys.executable, "-c", code], cwd=root, capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr


def test_class_labels():
    assert class_labels(None, 3, 10, "cpu").tolist() == [10, 10, 10]
    assert class_labels(4, 2, 10, "cpu").tolist() == [4, 4]
    assert class_labels(torch.tensor(7), 2, 10, "cpu").tolist() == [7, 7]
    assert class_labels([1, 10], 2, 10, "cpu").tolist() == [1, 10]
    for bad in (11, -1, [1, 2, 3], 1.5, torch.tensor([0.0, 1.0]), True, [0, 11]):
        with pytest.raises(ValueError):
            class_labels(bad, 2, 10, "cpu")


def test_edm_coefficients_table1():
    c = edm_coefficients(2.0, 0.5)
    assert c.c_skip == pytest.approx(0.25 / 4.25)
    assert c.c_out == pytest.approx(1.0 / math.sqrt(4.25))
    assert c.c_in == pytest.approx(1 / math.sqrt(4.25))
    assert c.c_noise == pytest.approx(math.log(2.0) / 4)
    # the effective training target has unit variance: c_skip^2 sd^2 + ... (EDM eq. 8's premise)
    assert (1 - c.c_skip) ** 2 * 0.25 + c.c_skip**2 * 4.0 == pytest.approx(c.c_out**2)
    for s, sd in ((0.0, 0.5), (-1.0, 0.5), (math.inf, 0.5), (1.0, 0.0)):
        with pytest.raises(ValueError):
            edm_coefficients(s, sd)


def test_edm2_precond_with_a_known_network():
    """F = 0 gives D = c_skip x; F = identity on its input gives (c_skip + c_out c_in) x."""
    x = torch.randn(2, 3, 4, 4, dtype=torch.float64)
    zero = EDM2Precond(lambda z, c_noise, y: torch.zeros_like(z))
    ident = EDM2Precond(lambda z, c_noise, y: z)
    c = edm_coefficients(0.7)
    torch.testing.assert_close(zero(x, 0.7, None), c.c_skip * x)
    torch.testing.assert_close(ident(x, 0.7, None), (c.c_skip + c.c_out * c.c_in) * x)
    seen = {}
    EDM2Precond(lambda z, c_noise, y: seen.setdefault("c", c_noise) is not None and z)(x, 0.7, None)
    torch.testing.assert_close(seen["c"], torch.full((2,), math.log(0.7) / 4, dtype=torch.float64))
    with pytest.raises(ValueError):
        EDM2Precond("not callable")
    with pytest.raises(ValueError):
        EDM2Precond(lambda z, c, y: z, sigma_data=-1.0)


# --- the three tiny networks --------------------------------------------------------------------------
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
@pytest.mark.parametrize("name", NAMES)
def test_shape_and_dtype(diffusers, name, dtype):
    model = build(name, dtype=dtype)
    x = sample_x(name, n=3, dtype=dtype)
    out = model(x, level(name), [0, 5, 9])
    assert out.shape == (3, CHANNELS[name], 8, 8) and out.dtype == dtype
    # the same seeded weights in the other precision give the same prediction (to float32 rounding)
    other = torch.float64 if dtype == torch.float32 else torch.float32
    twin = build(name, dtype=other)(x.to(other), level(name), [0, 5, 9])
    torch.testing.assert_close(out.double(), twin.double(), rtol=1e-4, atol=1e-4)
    assert build(name, size=16)(sample_x(name, size=16), level(name), 2).shape == (3, CHANNELS[name], 16, 16)


@pytest.mark.parametrize("name", NAMES)
def test_contract_equals_the_network_by_hand(diffusers, name):
    model = build(name, dtype=torch.float64)
    x = sample_x(name, dtype=torch.float64)
    y = torch.tensor([0, 3, 10])  # 10 = null
    for k in (1, 6, 10):
        sigma = level(name, k) if name != "edm2" else [0.01, 1.7, 80.0][(k > 1) + (k > 6)]
        torch.testing.assert_close(model(x, sigma, y), by_hand(name, model, x, sigma, y), rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize("default_schedule", [False, True])
@pytest.mark.parametrize("name", ["unet", "dit"])
def test_eps_models_use_original_training_indices(diffusers, name, default_schedule):
    """On a respaced schedule the network sees timesteps[t] (here 889 at t = 9), not t; the default
    full schedule accepts the respaced levels and gives the same index."""
    model = (tiny_unet() if name == "unet" else tiny_dit()) if default_schedule else build(name)
    seen = []
    net = raw_net(model)
    hook = net.register_forward_pre_hook(lambda mod, args, kwargs: seen.append(kwargs.get("timestep", args[1] if len(args) > 1 else None)), with_kwargs=True)
    try:
        model(sample_x(name), level(name, 9), 1)
    finally:
        hook.remove()
    assert seen[0].tolist() == [int(SCHEDULE.timesteps[9])] * 3 and int(SCHEDULE.timesteps[9]) != 9


@pytest.mark.parametrize("name", NAMES)
def test_gradient_wrt_x_matches_finite_differences(diffusers, name):
    """REG differentiates the conditional branch w.r.t. x: a VJP against a central difference."""
    model = build(name, dtype=torch.float64)
    x = sample_x(name, n=2, dtype=torch.float64).requires_grad_(True)
    g = torch.Generator().manual_seed(1)
    u, v = torch.randn(x.shape, generator=g, dtype=torch.float64), torch.randn(x.shape, generator=g, dtype=torch.float64)
    sigma = level(name)
    (vjp,) = torch.autograd.grad((model(x, sigma, 2) * u).sum(), x)
    assert torch.isfinite(vjp).all() and vjp.abs().max() > 0
    assert all(p.grad is None for p in raw_net(model).parameters())
    h = 1e-5
    with torch.no_grad():
        fd = ((model(x + h * v, sigma, 2) - model(x - h * v, sigma, 2)) * u).sum() / (2 * h)
    assert (vjp * v).sum().item() == pytest.approx(fd.item(), rel=1e-6)


@pytest.mark.parametrize("name", NAMES)
def test_forward_mode_jvp_matches_reverse_mode(diffusers, name):
    """REG's 'jvp' estimator runs the network in forward mode: u^T (J v) must equal (J^T u)^T v."""
    model = build(name, dtype=torch.float64)
    x = sample_x(name, n=2, dtype=torch.float64)
    g = torch.Generator().manual_seed(2)
    u, v = torch.randn(x.shape, generator=g, dtype=torch.float64), torch.randn(x.shape, generator=g, dtype=torch.float64)
    sigma = level(name)
    with torch.no_grad(), fwAD.dual_level():
        jv = fwAD.unpack_dual(model(fwAD.make_dual(x, v), sigma, 2)).tangent
    xg = x.clone().requires_grad_(True)
    (vjp,) = torch.autograd.grad((model(xg, sigma, 2) * u).sum(), xg)
    assert (jv * u).sum().item() == pytest.approx((vjp * v).sum().item(), rel=1e-9)
    forward_ad_compatible(raw_net(model))  # idempotent
    assert sum(len(m._forward_hooks) for m in raw_net(model).modules()) == sum(
        1 for m in raw_net(model).modules() if type(m).__name__ == "Attention"
    ) > 0


def test_dit_learned_sigma_split_keeps_the_first_c_channels(diffusers):
    model = build("dit")
    x, t = sample_x("dit"), torch.full((3,), 500, dtype=torch.long)
    raw = model.net.transformer(x, timestep=t, class_labels=torch.tensor([1, 2, 10])).sample
    assert raw.shape[1] == 8 and model.net.learned_sigma and model.net.channels == 4
    eps = model.net(x, t, [1, 2, 10])
    assert torch.equal(eps, raw[:, :4])
    assert not torch.allclose(raw[:, 4:], raw[:, :4])  # the dropped half is a different quantity
    assert model.net.null_label == 10 == model.net.transformer.config.num_embeds_ada_norm


@pytest.mark.parametrize("name", NAMES)
def test_conditional_and_null_labels_differ(diffusers, name):
    model, x, sigma = build(name), sample_x(name), level(name)
    cond, null = model(x, sigma, 3), model(x, sigma, None)
    assert (cond - null).abs().max() > 1e-4
    torch.testing.assert_close(null, model(x, sigma, 10), rtol=0, atol=0)  # None is the reserved index
    mixed = model(x, sigma, [3, 10, 3])  # samples do not interact
    torch.testing.assert_close(mixed[[0, 2]], cond[[0, 2]])
    torch.testing.assert_close(mixed[1], null[1])


@pytest.mark.parametrize("name", ["unet", "dit"])
def test_eps_model_rejects_a_sigma_off_the_schedule(diffusers, name):
    model, x = build(name), sample_x(name)
    for sigma in (0.123456, level(name) * 1.001, 0.0, -1.0):
        with pytest.raises(ValueError):
            model(x, sigma, 1)


def test_edm2_rejects_a_nonpositive_sigma(diffusers):
    model, x = build("edm2"), sample_x("edm2")
    for sigma in (0.0, -0.5, math.nan):
        with pytest.raises(ValueError):
            model(x, sigma, 1)


@pytest.mark.parametrize("name", NAMES)
def test_deterministic_for_a_seed_and_leaves_global_rng_alone(diffusers, name):
    state = torch.get_rng_state()
    a, b, c = build(name, seed=3), build(name, seed=3), build(name, seed=4)
    assert torch.equal(torch.get_rng_state(), state)
    x, sigma = sample_x(name), level(name)
    assert torch.equal(a(x, sigma, 1), b(x, sigma, 1))
    assert not torch.allclose(a(x, sigma, 1), c(x, sigma, 1))


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("name", NAMES)
def test_device_parameter(diffusers, name, device):
    model, cpu = build(name, device=device), build(name)
    assert all(p.device.type == device for p in raw_net(model).parameters())
    x, sigma = sample_x(name), level(name)
    out = model(x.to(device), sigma, [1, 2, 3])
    assert out.device.type == device
    torch.testing.assert_close(out.cpu(), cpu(x, sigma, [1, 2, 3]), rtol=1e-4, atol=1e-4)


def test_bad_networks_and_configurations(diffusers):
    plain = diffusers.UNet2DModel(
        sample_size=8, in_channels=3, out_channels=3, block_out_channels=(4, 8), layers_per_block=1,
        down_block_types=("DownBlock2D", "DownBlock2D"), up_block_types=("UpBlock2D", "UpBlock2D"), norm_num_groups=2,
    )
    with pytest.raises(ValueError, match="num_class_embeds"):
        UNetAdapter(plain)
    dit = build("dit").net.transformer
    dit.train()
    with pytest.raises(ValueError, match="eval"):
        DiTAdapter(dit)(sample_x("dit"), torch.full((3,), 5), 1)
    dit.eval()
    table = dit.transformer_blocks[0].norm1.emb.class_embedder.embedding_table
    assert table.num_embeddings == 11  # 10 classes + the null row of label dropout
    dit.transformer_blocks[0].norm1.emb.class_embedder.embedding_table = torch.nn.Embedding(10, table.embedding_dim)
    with pytest.raises(ValueError, match="null"):
        DiTAdapter(dit)  # a table without a null row
    for kw in ({"size": 7}, {"size": 2}, {"num_classes": 0}, {"channels": 0}, {"width": 3}, {"size": 8.5}):
        with pytest.raises(ValueError):
            tiny_unet(**kw)
    assert isinstance(tiny_unet(), EpsModel) and isinstance(tiny_dit(), EpsModel) and isinstance(tiny_edm2(), X0Model)

"""Loading latent diffusion models from a local directory: tiny random DiT / SD-style models and VAEs
are save_pretrained'd into tmp_path and reloaded (no network), then sampled with CFG and REG and decoded."""
import json
import math

import pytest
import torch

diffusers = pytest.importorskip("diffusers")

from images.pipelines import LatentPipeline, load_dit_pipeline, load_sd_pipeline  # noqa: E402
from sampler import Unguided, VModel, VPSchedule, bind, sample, sampling_levels, vp_prior  # noqa: E402

LATENT_C, LATENT = 4, 4  # latents 4 x 4 x 4, images 3 x 8 x 8


def _vae(latent_channels=LATENT_C):
    return diffusers.AutoencoderKL(in_channels=3, out_channels=3, down_block_types=("DownEncoderBlock2D",) * 2,
                                   up_block_types=("UpDecoderBlock2D",) * 2, block_out_channels=(4, 8), layers_per_block=1,
                                   latent_channels=latent_channels, norm_num_groups=2, sample_size=2 * LATENT)


def _save(root, **parts):
    for name, module in parts.items():
        module.save_pretrained(root / name)
    return root


@pytest.fixture(scope="module")
def dit_dir(tmp_path_factory):
    torch.manual_seed(0)
    root = tmp_path_factory.mktemp("dit")
    dit = diffusers.DiTTransformer2DModel(num_attention_heads=2, attention_head_dim=4, in_channels=LATENT_C,
                                          out_channels=2 * LATENT_C, num_layers=1, sample_size=LATENT, patch_size=2,
                                          num_embeds_ada_norm=5)
    return _save(root, transformer=dit, vae=_vae(), scheduler=diffusers.DDPMScheduler(beta_schedule="linear"))


@pytest.fixture(scope="module")
def sd_dir(tmp_path_factory):
    torch.manual_seed(1)
    root = tmp_path_factory.mktemp("sd")
    unet = diffusers.UNet2DConditionModel(sample_size=LATENT, in_channels=LATENT_C, out_channels=LATENT_C,
                                          block_out_channels=(4, 8), layers_per_block=1,
                                          down_block_types=("CrossAttnDownBlock2D", "DownBlock2D"),
                                          up_block_types=("UpBlock2D", "CrossAttnUpBlock2D"),
                                          cross_attention_dim=6, attention_head_dim=2, norm_num_groups=2)
    sched = diffusers.DDPMScheduler(beta_schedule="scaled_linear", beta_start=0.00085, beta_end=0.012,
                                    prediction_type="v_prediction")
    return _save(root, unet=unet, vae=_vae(), scheduler=sched)


def test_dit_pipeline_loads_samples_and_decodes(dit_dir):
    pipe = load_dit_pipeline(dit_dir)
    assert isinstance(pipe, LatentPipeline) and pipe.kind == "dit" and pipe.num_classes == 5
    assert pipe.latent_shape == (LATENT_C, LATENT, LATENT) and pipe.scaling_factor == pytest.approx(0.18215)
    saved = diffusers.DiTTransformer2DModel.from_pretrained(dit_dir / "transformer")
    for (k, a), b in zip(pipe.model.net.transformer.state_dict().items(), saved.state_dict().values()):
        assert torch.equal(a, b), k
    labels = torch.tensor([0, 4])
    outs = {}
    for est in ("none", "vjp", "jvp"):
        g = torch.Generator().manual_seed(0)
        out = pipe.generate(pipe.guidance(labels, 2.0, est), 2, steps=3, generator=g)
        assert out.latents.shape == (2, LATENT_C, LATENT, LATENT) and out.images.shape == (2, 3, 2 * LATENT, 2 * LATENT)
        assert torch.all(torch.isfinite(out.images)) and out.images.abs().max() <= 1
        outs[est] = out.latents
    assert not torch.allclose(outs["none"], outs["vjp"])
    g = torch.Generator().manual_seed(0)
    heun = pipe.generate(pipe.guidance(3), 2, steps=3, sampler="heun", generator=g)
    # generate = the sampler core by hand on the schedule's Heun levels, then the VAE by hand
    g = torch.Generator().manual_seed(0)
    sig = sampling_levels(pipe.model.schedule, "heun", 3)
    start = vp_prior(torch.randn((2, *pipe.latent_shape), generator=g), float(sig[0]))
    by_hand = sample("heun", Unguided(bind(pipe.model, 3)), start, sig, generator=g)
    torch.testing.assert_close(heun.latents, by_hand, rtol=0, atol=0)
    with torch.no_grad():
        images = pipe.vae.decode(by_hand / 0.18215).sample.clamp(-1, 1)
    torch.testing.assert_close(heun.images, images, rtol=0, atol=0)


def test_sd_pipeline_matches_a_direct_unet_call(sd_dir):
    null = torch.zeros(3, 6)
    pipe = load_sd_pipeline(sd_dir, null_embedding=null)
    assert pipe.kind == "sd" and isinstance(pipe.model, VModel)
    sched = pipe.model.schedule
    want = VPSchedule.from_betas(torch.linspace(math.sqrt(0.00085), math.sqrt(0.012), 1000, dtype=torch.float64) ** 2)
    assert torch.allclose(sched.abar, want.abar)
    # the contract's x0_hat equals SD's v-prediction formula on the saved UNet
    unet = diffusers.UNet2DConditionModel.from_pretrained(sd_dir / "unet").eval()
    t = 600
    sigma, abar = float(sched.sigmas[t]), float(sched.abar[t])
    g = torch.Generator().manual_seed(0)
    x = vp_prior(torch.randn(2, LATENT_C, LATENT, LATENT, generator=g), sigma)
    emb = torch.randn(2, 3, 6, generator=g)
    x_vp = x * math.sqrt(abar)
    with torch.no_grad():
        v = unet(x_vp, torch.tensor([t, t]), encoder_hidden_states=emb).sample
        d = pipe.model(x, sigma, emb)
    assert torch.allclose(d, math.sqrt(abar) * x_vp - math.sqrt(1 - abar) * v, atol=1e-5)
    out = pipe.generate(pipe.guidance(emb[0], 1.5, "paper"), 2, steps=3, generator=torch.Generator().manual_seed(1))
    assert out.images.shape == (2, 3, 2 * LATENT, 2 * LATENT) and torch.all(torch.isfinite(out.images))


def test_sd_conditioning_errors(sd_dir):
    pipe = load_sd_pipeline(sd_dir)  # no null embedding
    x = torch.randn(2, LATENT_C, LATENT, LATENT)
    sigma = float(pipe.model.schedule.sigmas[10])
    with pytest.raises(ValueError, match="null"):
        pipe.model(x, sigma, None)
    with pytest.raises(ValueError, match="prompt embeddings must be"):
        pipe.model(x, sigma, torch.zeros(2, 3, 5))
    with pytest.raises(ValueError, match="1 or 2 rows"):
        pipe.model(x, sigma, torch.zeros(3, 3, 6))
    with pytest.raises(ValueError, match="latents must be"):
        pipe.decode(torch.zeros(1, 3, LATENT, LATENT))


def test_clear_errors_for_incomplete_directories(tmp_path, dit_dir):
    with pytest.raises(ValueError, match="not a directory"):
        load_dit_pipeline(tmp_path / "nothing")
    with pytest.raises(ValueError, match="missing transformer/config.json"):
        load_dit_pipeline(tmp_path)
    with pytest.raises(ValueError, match="missing unet/config.json"):
        load_sd_pipeline(dit_dir)  # a DiT folder is not an SD folder
    bad = _save(tmp_path / "bad", vae=_vae(latent_channels=2))
    (bad / "transformer").symlink_to(dit_dir / "transformer")
    with pytest.raises(ValueError, match="latent channels"):
        load_dit_pipeline(bad)
    broken = tmp_path / "broken"
    (broken / "transformer").mkdir(parents=True)
    (broken / "transformer" / "config.json").write_text(json.dumps({"_class_name": "DiTTransformer2DModel"}))
    (broken / "vae").symlink_to(dit_dir / "vae")
    with pytest.raises(ValueError, match="could not load"):
        load_dit_pipeline(broken)

"""FaceXFormer: a checkpoint in the release's layout (``torch.save({"state_dict_backbone": ...})``,
torchvision ``swin_b`` tensor names, per-stage projections, fusion conv, decoder) loads strictly, and
the encoder computes what transformers' own SwinModel plus the authors' fusion head compute."""
from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from nanoemox.errors import ConfigError
from nanoemox.modeling.pretrained.facexformer import FaceXFormerEncoder, load_facexformer


def _hf_swin(image_size: int, window: int):
    from transformers import SwinConfig, SwinModel

    torch.manual_seed(0)
    cfg = SwinConfig(image_size=image_size, patch_size=4, embed_dim=8, depths=[2, 2, 2, 2], num_heads=[1, 2, 2, 4], window_size=window)
    model = SwinModel(cfg).eval()
    with torch.no_grad():  # non-zero biases and tables so that every tensor matters
        for p in model.parameters():
            p.add_(torch.randn_like(p) * 0.05)
    return model


def _release_state(hf) -> dict[str, torch.Tensor]:
    """Rename a transformers SwinModel into torchvision ``swin_b`` names under ``backbone.`` (as the
    release holds them), then add the fusion head and a sample of decoder tensors."""
    sd = {k: v.clone() for k, v in hf.state_dict().items()}
    out = {
        "backbone.0.0.0.weight": sd["embeddings.patch_embeddings.projection.weight"],
        "backbone.0.0.0.bias": sd["embeddings.patch_embeddings.projection.bias"],
        "backbone.0.0.2.weight": sd["embeddings.norm.weight"],
        "backbone.0.0.2.bias": sd["embeddings.norm.bias"],
        "backbone.1.weight": sd["layernorm.weight"],
        "backbone.1.bias": sd["layernorm.bias"],
    }
    for s, stage in enumerate(hf.encoder.layers):
        for j, block in enumerate(stage.blocks):
            tv = f"backbone.0.{2 * s + 1}.{j}."
            hfp = f"encoder.layers.{s}.blocks.{j}."
            att = hfp + "attention."
            for part in ("weight", "bias"):
                out[tv + f"attn.qkv.{part}"] = torch.cat([sd[att + f"{n}_proj.{part}"] for n in ("q", "k", "v")])
                out[tv + f"attn.proj.{part}"] = sd[att + f"o_proj.{part}"]
                out[tv + f"norm1.{part}"] = sd[hfp + f"layernorm_before.{part}"]
                out[tv + f"norm2.{part}"] = sd[hfp + f"layernorm_after.{part}"]
                out[tv + f"mlp.0.{part}"] = sd[hfp + f"mlp.fc1.{part}"]
                out[tv + f"mlp.3.{part}"] = sd[hfp + f"mlp.fc2.{part}"]
            rpb = block.attention.relative_position_bias
            out[tv + "attn.relative_position_bias_table"] = sd[att + "relative_position_bias.relative_position_bias_table"]
            out[tv + "attn.relative_position_index"] = rpb.relative_position_index.clone()  # persistent in torchvision
        if stage.downsample is not None:
            tv = f"backbone.0.{2 * s + 2}."
            out[tv + "reduction.weight"] = sd[f"encoder.layers.{s}.downsample.reduction.weight"]
            out[tv + "norm.weight"] = sd[f"encoder.layers.{s}.downsample.norm.weight"]
            out[tv + "norm.bias"] = sd[f"encoder.layers.{s}.downsample.norm.bias"]
    g = torch.Generator().manual_seed(1)
    for i in range(4):
        out[f"linear_c.{i}.proj.weight"] = torch.randn(256, 8 * 2**i, generator=g) * 0.1
        out[f"linear_c.{i}.proj.bias"] = torch.randn(256, generator=g) * 0.1
    out["linear_fuse.weight"] = torch.randn(256, 1024, 1, 1, generator=g) * 0.05
    # the task decoder (not used by nanoemox), a sample of its tensors
    out["pe_layer.positional_encoding_gaussian_matrix"] = torch.randn(2, 128, generator=g)
    out["face_decoder.landmarks_token.weight"] = torch.randn(1, 256, generator=g)
    out["face_decoder.mask_tokens.weight"] = torch.randn(11, 256, generator=g)
    out["face_decoder.output_upscaling.0.weight"] = torch.randn(256, 64, 2, 2, generator=g)
    out["face_decoder.landmarks_prediction_head.layers.2.weight"] = torch.randn(136, 256, generator=g)
    out["face_decoder.transformer.layers.0.self_attn.q_proj.weight"] = torch.randn(256, 256, generator=g)
    return out


def _expected(hf, state, x) -> torch.Tensor:
    """The authors' head on transformers' stage outputs (pre-downsampling, channels first)."""
    with torch.no_grad():
        hs = hf(pixel_values=x, output_hidden_states=True, output_hidden_states_before_downsampling=True).reshaped_hidden_states[1:]
        size = hs[0].shape[2:]
        maps = []
        for i, h in enumerate(hs):
            m = F.linear(h.flatten(2).transpose(1, 2), state[f"linear_c.{i}.proj.weight"], state[f"linear_c.{i}.proj.bias"])
            maps.append(F.interpolate(m.transpose(1, 2).reshape(x.shape[0], 256, *h.shape[2:]), size=size, mode="bilinear", align_corners=False))
        return F.conv2d(torch.cat(maps[::-1], 1), state["linear_fuse.weight"]).mean((2, 3))


@pytest.mark.parametrize("image_size,window", [(224, 7), (64, 2)])
def test_release_layout_loads_strictly_and_matches_transformers_swin(tmp_path, image_size, window):
    hf = _hf_swin(image_size, window)
    state = _release_state(hf)
    path = tmp_path / "facexformer_release.pt"
    torch.save({"state_dict_backbone": state}, path)  # as the release ships it

    enc = load_facexformer(path)
    assert enc.arch == dict(embed_dim=8, depths=[2, 2, 2, 2], num_heads=[1, 2, 2, 4], window_size=window, patch_size=4, fused_dim=256)
    # strict=True on everything but the decoder: the module's own keys are exactly the release's
    kept = {k for k in state if not k.startswith(("face_decoder.", "pe_layer."))}
    assert set(enc.state_dict()) == kept
    fresh = FaceXFormerEncoder(**enc.arch).state_dict()  # the index a randomly initialised encoder computes
    for k in (k for k in kept if k.endswith("relative_position_index")):
        assert torch.equal(fresh[k], state[k]), k
    x = torch.randn(2, 3, image_size, image_size)
    with torch.no_grad():
        got = enc(x)
        stages = enc.stage_outputs(x)
    assert got.shape == (2, 256)
    ref_stages = hf(pixel_values=x, output_hidden_states=True, output_hidden_states_before_downsampling=True).reshaped_hidden_states[1:]
    for a, b in zip(stages, ref_stages):
        torch.testing.assert_close(a.permute(0, 3, 1, 2), b, atol=2e-5, rtol=1e-4)
    torch.testing.assert_close(got, _expected(hf, state, x), atol=2e-5, rtol=1e-4)


def test_layout_errors_are_one_line(tmp_path):
    enc = FaceXFormerEncoder(embed_dim=8, depths=(1, 1, 1, 1), num_heads=(1, 1, 1, 1), window_size=2)
    state = enc.state_dict()
    bad = dict(state, **{"linear_c.9.proj.weight": torch.zeros(1)})  # a tensor the layout lacks
    torch.save({"state_dict_backbone": bad}, tmp_path / "extra.pt")
    with pytest.raises(ConfigError, match="does not match FaceXFormer's layout"):
        load_facexformer(tmp_path / "extra.pt")
    torch.save({"state_dict_backbone": {k: v for k, v in state.items() if k != "linear_fuse.weight"}}, tmp_path / "missing.pt")
    with pytest.raises(ConfigError, match="not a FaceXFormer state dict"):
        load_facexformer(tmp_path / "missing.pt")
    (tmp_path / "junk.pt").write_bytes(b"not a checkpoint")
    with pytest.raises(ConfigError, match="not a readable torch checkpoint"):
        load_facexformer(tmp_path / "junk.pt")
    with pytest.raises(ConfigError, match="not found"):
        load_facexformer(tmp_path / "absent.pt")

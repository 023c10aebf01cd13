"""`uprez upscale --model X.pth` and `--upsampler` through the real command line, on real files."""

from __future__ import annotations

import zipfile

import numpy as np
import pytest
import torch
from PIL import Image

from engine.cli import main
from engine.imagefile import read_image, write_image


def _png(tmp_path, size=(24, 20), mode="RGB", seed=0):
    rng = np.random.default_rng(seed)
    channels = len(mode)
    pixels = (rng.random((size[1], size[0], channels)) * 255).astype(np.uint8)
    path = tmp_path / f"in-{mode}.png"
    Image.fromarray(pixels[:, :, 0] if channels == 1 else pixels, mode).save(path)
    return path


@pytest.mark.parametrize(("arch", "suffix", "scale"), [("esrgan", ".pth", 3), ("span", ".safetensors", 1.5),
                                                       ("dat", ".pth", 2)])
def test_an_upscale_model_runs_on_its_own_from_the_command_line(sr_file, tmp_path, capsys, arch, suffix, scale):
    out = tmp_path / "out.png"
    code = main(["upscale", str(_png(tmp_path)), "-o", str(out), "-s", str(scale), "--model",
                 str(sr_file(arch, 2, suffix)), "-q"])
    assert code == 0, capsys.readouterr().err
    assert read_image(out).shape == (round(20 * scale), round(24 * scale), 3)


def test_sixteen_bit_rgba_file_stays_sixteen_bit_rgba(sr_file, tmp_path):
    rng = np.random.default_rng(1)
    src = tmp_path / "deep.png"
    write_image(src, (rng.random((16, 18, 4)) * 65535).astype(np.uint16))
    out = tmp_path / "out.png"
    assert main(["upscale", str(src), "-o", str(out), "--model", str(sr_file("compact", 4)), "-s", "4", "-q"]) == 0
    result = read_image(out)
    assert result.dtype == np.uint16 and result.shape == (64, 72, 4)


def _broken_files(tmp_path):
    truncated = tmp_path / "truncated.pth"
    torch.save({"conv.weight": torch.zeros(8, 3, 3, 3)}, truncated)
    truncated.write_bytes(truncated.read_bytes()[:60])
    unknown = tmp_path / "unknown.pth"
    torch.save({"encoder.layer.0.weight": torch.zeros(4, 4), "decoder.bias": torch.zeros(4)}, unknown)
    not_tensors = tmp_path / "notes.pth"
    with zipfile.ZipFile(not_tensors, "w"):  # an empty zip: torch.load's format, nothing inside
        pass
    text = tmp_path / "readme.safetensors"
    text.write_text("these are not weights")
    listing = tmp_path / "list.pth"
    torch.save([1, 2, 3], listing)
    return {truncated: "not a readable model file", unknown: "not a known upscale architecture; found 2 tensors "
            "(encoder.layer.0.weight, decoder.bias)", not_tensors: "not a readable model file",
            listing: "'list' object", text: "not a readable .safetensors"}


def test_a_broken_or_unknown_model_file_gets_one_line_naming_it(tmp_path, capsys):
    image = _png(tmp_path)
    for path, said in _broken_files(tmp_path).items():
        out = tmp_path / "out.png"
        code = main(["upscale", str(image), "-o", str(out), "--model", str(path), "-q"])
        err = capsys.readouterr().err.strip()
        assert code != 0 and not out.exists(), err
        assert len(err.splitlines()) == 1 and path.name in err, err
        assert said in err, err


def test_a_state_dict_of_a_known_architecture_with_wrong_shapes_is_named(sr_file, tmp_path, capsys):
    from engine.testing.tiny_sr import tiny_state_dict

    state = tiny_state_dict("compact", 2)
    state.pop(sorted(state)[-1])  # a layer missing, as in a cut-off download
    path = tmp_path / "cut.pth"
    torch.save(state, path)
    code = main(["upscale", str(_png(tmp_path)), "-o", str(tmp_path / "o.png"), "--model", str(path), "-q"])
    err = capsys.readouterr().err.strip()
    assert code != 0 and len(err.splitlines()) == 1 and "cut.pth" in err and "tensors" in err, err


def test_upsampler_by_name_from_an_sr_folder_and_unknown_names_are_refused(sr_file, tmp_path, monkeypatch, capsys):
    folder = tmp_path / "sr-models"
    folder.mkdir()
    (folder / "4x-Tiny.pth").write_bytes(sr_file("compact", 4).read_bytes())
    monkeypatch.setenv("UPREZ_SR_DIRS", str(folder))
    monkeypatch.setenv("UPREZ_CONFIG_DIR", str(tmp_path / "config"))
    out = tmp_path / "out.png"
    assert main(["upscale", str(_png(tmp_path)), "-o", str(out), "--upsampler", "4x-tiny", "-q"]) == 0
    assert read_image(out).shape == (40, 48, 3)
    code = main(["upscale", str(_png(tmp_path)), "-o", str(tmp_path / "o2.png"), "--upsampler", "nope", "-q"])
    assert code != 0 and "upsampler 'nope' was not found" in capsys.readouterr().err


def test_a_flow_transformer_checkpoint_is_not_taken_for_an_upscale_model(tiny_model, tmp_path, capsys):
    from safetensors.torch import save_file

    from engine.sr.load import is_sr_checkpoint
    from engine.testing.tiny_models import save_single_file_transformer

    checkpoint = save_single_file_transformer(tiny_model("flux-dev"), tmp_path / "flux.safetensors")
    assert not is_sr_checkpoint(checkpoint)
    foreign = tmp_path / "foreign.safetensors"
    save_file({"text_model.weight": torch.zeros(2, 2)}, str(foreign))
    code = main(["upscale", str(_png(tmp_path)), "-o", str(tmp_path / "o.png"), "--model", str(foreign), "-q"])
    err = capsys.readouterr().err.strip()
    assert code != 0 and len(err.splitlines()) == 1
    assert "foreign.safetensors: neither a flow transformer Uprez knows nor a known upscale architecture" in err

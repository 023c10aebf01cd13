"""`--lora` on the command line and `loras` in a server job: applied through the same path as the library's,
another family's LoRA refused in one line before the job runs (exit 2 / HTTP 400), and nothing written."""

from __future__ import annotations

import numpy as np
import pytest
from PIL import Image

from engine.cli import main
from engine.testing.tiny_loras import save_tiny_lora
from plugin.uprez_client.errors import RejectedInput


@pytest.fixture(scope="module")
def loras(tiny_backend, tmp_path_factory):
    folder = tmp_path_factory.mktemp("loras")
    flux = tiny_backend("flux-dev").pipe.transformer
    z_image = tiny_backend("z-image").pipe.transformer
    return {"flux": save_tiny_lora(flux, "flux", folder / "flux.safetensors", "kohya"),
            "z-image": save_tiny_lora(z_image, "z-image", folder / "z.safetensors", "diffusers")}


def test_cli_lora(tiny_flux, loras, sample_png, tmp_path, capsys):
    plain, with_lora, half = tmp_path / "plain.png", tmp_path / "lora.png", tmp_path / "half.png"
    common = ["--model", str(tiny_flux), "--device", "cpu", "--seed", "3"]
    assert main(["upscale", str(sample_png), "-o", str(plain), *common]) == 0
    assert main(["upscale", str(sample_png), "-o", str(with_lora), *common, "--lora", str(loras["flux"])]) == 0
    assert main(["upscale", str(sample_png), "-o", str(half), *common, "--lora", f"{loras['flux']}:0"]) == 0
    a, b, c = (np.asarray(Image.open(p)).astype(np.int16) for p in (plain, with_lora, half))
    assert np.abs(a - b).mean() > 0.5
    assert np.array_equal(a, c)  # weight 0: the base model's bytes

    wrong = tmp_path / "wrong.png"
    capsys.readouterr()
    assert main(["upscale", str(sample_png), "-o", str(wrong), *common, "--lora", str(loras["z-image"])]) == 2
    err = capsys.readouterr().err.strip()
    assert err.count("\n") == 0 and "z-image" in err and "flux" in err, err
    assert not wrong.exists()


def test_server_lora(client, loras, sample_image):
    pixels = np.asarray(sample_image.convert("RGBA"))[:32, :32].copy()
    h, w = pixels.shape[:2]

    def run(**params) -> np.ndarray:
        job = client.submit_raw(pixels.tobytes(), w, h, "RGBA", 8, scale=2, seed=1, **params)
        client.wait(job)
        data, _ = client.result(job)
        return np.frombuffer(data, np.uint8).astype(np.int16)

    base = run()
    assert np.abs(run(loras=[f"{loras['flux']}:1"]) - base).mean() > 0.5
    assert np.array_equal(run(loras=[f"{loras['flux']}:0"]), base)
    assert np.array_equal(run(), base)  # the next job without LoRAs runs the bare base again
    with pytest.raises(RejectedInput, match="is a LoRA for z-image"):
        client.submit_raw(pixels.tobytes(), w, h, "RGBA", 8, scale=2, loras=[str(loras["z-image"])])
    with pytest.raises(RejectedInput, match="takes none"):
        client.submit_raw(pixels.tobytes(), w, h, "RGBA", 8, scale=2, model="builtin", loras=[str(loras["flux"])])
    with pytest.raises(RejectedInput, match="does not exist"):
        client.submit_raw(pixels.tobytes(), w, h, "RGBA", 8, scale=2, loras=["/nowhere/x.safetensors"])

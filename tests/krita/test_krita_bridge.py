"""The Krita bridge inside the real Krita (kritarunner, offscreen, batch mode) against a real `uprez serve`.

One kritarunner process runs every scenario of krita_scenarios.py (Krita takes seconds to start) and
records what the documents hold; the tests below check those records. Skipped where Krita is not
installed (`apt-get install -y krita xvfb`; .ci/run installs it).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import kritas
import numpy as np
import pytest
from PIL import Image, ImageCms

from engine.testing.metrics import psnr

ROOT = Path(__file__).resolve().parents[2]
HERE = Path(__file__).resolve().parent
W, H = 64, 48

SCENARIO_NAMES = ("profiled_linear_u16", "profiled_clay_f32", "resize_u8", "new_document_u8", "resize_u16",
                  "new_document_u16", "selection_resize", "selection_new_document", "cancel", "failure", "refusals",
                  "close_document", "undo_steps",
                  "remote")  # krita_scenarios.SCENARIOS (which only imports inside Krita)
# Every scenario runs in the newest Krita (6.0, the PyQt6 one); the others run the SMOKE set, which covers each
# kind of job (resize and new document, selection only, 8 and 16 bits, cancel, closing the document), to keep the
# suite's time within CI's limit (docs/krita.md has the times).
SMOKE = ("resize_u8", "new_document_u16", "selection_resize", "cancel", "close_document", "failure", "remote")


def versions_for(scenario: str) -> list:
    """The Krita versions a scenario's test runs in, as indirect params of the `krita` fixture."""
    chosen = [v for v in kritas.VERSIONS if v == kritas.NEWEST or scenario in SMOKE]
    return [pytest.param(v, id=v) for v in chosen]


def in_versions(scenario: str):
    return pytest.mark.parametrize("krita", versions_for(scenario), indirect=True)


def depth_cases(template: str):
    """(krita, depth) params for a scenario per bit depth, each in the versions that run it."""
    cases = [pytest.param(v.values[0], depth, id=f"{v.id}-{depth}bit")
             for depth in (8, 16) for v in versions_for(template.format(depth))]
    return pytest.mark.parametrize(("krita", "depth"), cases, indirect=["krita"])


def run_in_krita(function: str, env: dict[str, str], version: str = "host", binds: list = (),
                 timeout: float = 600) -> subprocess.CompletedProcess:
    env = dict(env, QT_QPA_PLATFORM="offscreen",
               PYTHONPATH=os.pathsep.join([str(HERE), str(ROOT / "plugin" / "krita")]))
    return kritas.run(version, ["kritarunner", "-s", "krita_scenarios", "-f", function], env, binds, timeout)


@pytest.fixture(scope="module")
def krita_home(tmp_path_factory) -> dict[str, str]:
    """A throwaway HOME and XDG folders, so the real user's Krita settings and resources stay untouched."""
    home = tmp_path_factory.mktemp("krita-home")
    return {"HOME": str(home), "XDG_CONFIG_HOME": str(home / ".config"), "XDG_DATA_HOME": str(home / ".local/share"),
            "XDG_CACHE_HOME": str(home / ".cache"), "XDG_RUNTIME_DIR": str(home / "run")}


@pytest.fixture(scope="module")
def engine(serve_process, tiny_flux):
    """The real `uprez serve` (built-in model by default; the tiny FLUX for slow jobs)."""
    return serve_process("--model", "builtin", "--model-dir", str(tiny_flux.parent))


@pytest.fixture(scope="module")
def tls_engine(tmp_path_factory):
    """A real engine behind TLS with a self-made certificate: the remote engine of the "remote" scenario."""
    from tls_engine import start_tls_engine

    engine = start_tls_engine(tmp_path_factory.mktemp("tls-engine"))
    yield engine
    engine.stop()


@pytest.fixture(scope="module")
def krita_runs(engine, tls_engine) -> dict:
    """version -> its run's record getter (or why it failed or was skipped), for the module's engine."""
    return {}


@pytest.fixture
def krita(request, krita_runs, engine, tls_engine, tiny_flux, tmp_path_factory):
    """Every scenario's record, from one kritarunner run per Krita version against the engine. Cached here rather
    than by a module-scoped parametrized fixture: pytest orders these tests by each parametrize's param index, not
    its value, and started kritarunner again at every change of version (11 runs for 3 versions)."""
    version = getattr(request, "param", "host")
    if version not in krita_runs:
        try:
            krita_runs[version] = _run_scenarios(version, engine, tls_engine, tiny_flux, tmp_path_factory)
        except (pytest.fail.Exception, pytest.skip.Exception) as outcome:  # the same for every test of this version
            krita_runs[version] = outcome
    run = krita_runs[version]
    if isinstance(run, BaseException):
        raise run
    return run


def _run_scenarios(version: str, engine, tls_engine, tiny_flux, tmp_path_factory):
    home = tmp_path_factory.mktemp(f"krita-home-{version}")
    krita_home = {"HOME": str(home), "XDG_CONFIG_HOME": str(home / ".config"),
                  "XDG_DATA_HOME": str(home / ".local/share"), "XDG_CACHE_HOME": str(home / ".cache"),
                  "XDG_RUNTIME_DIR": str(home / "run")}
    out = tmp_path_factory.mktemp(f"krita-out-{version}")
    Path(krita_home["XDG_RUNTIME_DIR"]).mkdir(mode=0o700, parents=True, exist_ok=True)
    # The bridge finds the engine as in real use: engine.json and the token in the config folder.
    scenarios = [name for name in SCENARIO_NAMES if version == kritas.NEWEST or name in SMOKE]
    env = dict(krita_home, UPREZ_CONFIG_DIR=str(engine.config_dir), UPREZ_KRITA_OUT=str(out),
               UPREZ_KRITA_SLOW_MODEL=str(tiny_flux), UPREZ_KRITA_SCENARIOS=",".join(scenarios),
               UPREZ_KRITA_REMOTE=tls_engine.connection_string(),
               UPREZ_KRITA_REMOTE_WRONG_PIN=tls_engine.connection_string(fingerprint="cd" * 32),
               UPREZ_KRITA_REMOTE_REVOKED=tls_engine.revoked_string(f"former-{version}"))
    done = run_in_krita("main", env, version, [home, out, engine.config_dir])
    results_file = out / "results.json"
    if not results_file.exists():
        pytest.fail(f"kritarunner ({kritas.LABELS[version]}) wrote no results (exit {done.returncode}):\n"
                    f"{done.stdout[-3000:]}\n{done.stderr[-3000:]}")
    results = json.loads(results_file.read_text())
    kritas.TIMES[version] = f"Python's Qt {next(iter(results.values())).get('qt')}; scenarios took " + ", ".join(
        f"{name} {record.get('scenario_seconds')} s" for name, record in results.items())

    def get(name: str) -> dict:
        record = results.get(name)
        assert record is not None, f"scenario {name} did not run in {kritas.LABELS[version]}"
        assert record["ok"], record.get("error")
        return record

    get.out = out
    get.version = version
    return get


def pixels(krita, name: str, width: int, height: int, depth: int = 8) -> np.ndarray:
    data = (krita.out / name).read_bytes()
    dtype = np.uint8 if depth == 8 else np.dtype("<u2")
    return np.frombuffer(data, dtype=dtype).reshape(height, width, 4)


def source_pattern(depth: int = 8) -> np.ndarray:
    """The BGRA pattern krita_scenarios.pattern() paints, built independently here."""
    top = 255 if depth == 8 else 65535
    y, x = np.mgrid[0:H, 0:W]
    out = np.stack([top * ((x + y) % 16) // 15, top * y // (H - 1), top * x // (W - 1), np.full_like(x, 255)], -1)
    if depth == 16:
        out[..., 3] = top
    return out.astype(np.uint8 if depth == 8 else np.uint16)


def lanczos_2x(bgra: np.ndarray) -> np.ndarray:
    """The plain 2x of the pattern (8-bit), to compare the model's colours against."""
    rgb = Image.fromarray(np.ascontiguousarray(bgra[..., 2::-1]).astype(np.uint8))
    return np.asarray(rgb.resize((2 * W, 2 * H), Image.Resampling.LANCZOS)).astype(np.float64)


def direct_answer(engine, depth: int, profile: bytes | None = None, **changes) -> np.ndarray:
    """The engine's own answer to the job the bridge sent for the whole (unselected) layer at `depth`, asked
    again with the same params (from the engine's job list), the same source pixels and ICC `profile` (the
    document's, which the bridge sends too), with `changes`."""
    from plugin.uprez_client import Client

    client = Client(engine.url, token=(engine.config_dir / "token").read_text().strip())
    sent = [job["params"] for job in client.jobs() if job["params"].get("client") == "Krita"
            and job["state"] == "done" and job["params"].get("format") == "raw" and "mask_format" not in job["params"]
            and (job["params"]["width"], job["params"]["height"], job["params"]["depth"]) == (W, H, depth)]
    assert sent, "the engine has no record of the bridge's whole-layer job"
    params = {key: value for key, value in sent[0].items() if value is not None}
    params.update(changes)
    layout = {key: params.pop(key) for key in ("format", "width", "height", "channels", "depth")}
    assert layout["channels"] == "BGRA"
    job = client.submit_raw(source_pattern(depth).tobytes(), W, H, "BGRA", depth, profile=profile or None, **params)
    client.wait(job)
    data, meta = client.result(job)
    assert (meta["width"], meta["height"]) == (2 * W, 2 * H)
    return np.frombuffer(data, dtype=np.uint8 if depth == 8 else np.dtype("<u2")).reshape(2 * H, 2 * W, 4)


def assert_the_model_ran(engine, out: np.ndarray, depth: int, profile: bytes | None) -> None:
    """PSNR against Lanczos alone passes for a plain resize too: the layer must be the engine's answer to the
    same job, and that answer must differ from the same job at strength 0 (the engine's plain resize)."""
    # 8-bit: the same bytes. 16-bit: at most one step of 65535 (Krita's placement of the result in a document of
    # its default 16-bit profile rounds a few dozen values the other way); the model's change is > 128 steps.
    direct = direct_answer(engine, depth, profile)
    off = np.abs(out.astype(np.int64) - direct.astype(np.int64)).max()
    assert off <= (0 if depth == 8 else 1), f"the layer is not what the engine answers for this job (off by {off})"
    plain = direct_answer(engine, depth, profile, strength=0.0)
    scale = 1 if depth == 8 else 257
    change = np.abs(out[..., :3].astype(np.float64) - plain[..., :3].astype(np.float64)).mean() / scale
    assert change > 0.5, f"the layer is the plain resize (mean change {change:.2f} of 255): the model did not run"


@depth_cases("resize_u{}")
def test_resize_canvas_scales_the_document_and_adds_the_result_above_the_source(krita, engine, depth):
    record = krita(f"resize_u{depth}")
    assert record["doc"]["size"] == [2 * W, 2 * H]
    names = [layer[0] for layer in record["doc"]["layers"]]
    assert len(names) == 3 and record["above_source"], names  # Background, src, the result right above src
    result = record["result"]
    assert result["bounds"] == [0, 0, 2 * W, 2 * H]
    assert result["depth"] == f"U{depth}"
    out = pixels(krita, result["pixels"], 2 * W, 2 * H, depth)
    scale = 1 if depth == 8 else 257
    rgb = out[..., 2::-1].astype(np.float64) / scale
    assert np.all(out[..., 3] == (255 if depth == 8 else 65535))
    # The model's picture of the pattern: close to a plain 2x (the built-in model is faithful), not equal to it.
    assert psnr(rgb, lanczos_2x(source_pattern(8)), peak=255) > 25
    assert_the_model_ran(engine, out, depth, (krita.out / record["sent_profile"]).read_bytes())
    # The source layer holds exactly what Krita's own scaling gives: scaled, never painted on.
    assert (krita.out / record["source_after"]).read_bytes() == (krita.out / record["source_expected"]).read_bytes()
    assert np.array_equal(pixels(krita, record["source_before"], W, H, depth), source_pattern(depth))


@depth_cases("new_document_u{}")
def test_new_document_holds_the_result_and_leaves_the_source_document_alone(krita, engine, depth):
    record = krita(f"new_document_u{depth}")
    assert record["doc"]["size"] == [W, H] and len(record["doc"]["layers"]) == 2
    assert (krita.out / record["source_after"]).read_bytes() == (krita.out / record["source_before"]).read_bytes()
    assert record["new_doc"]["size"] == [2 * W, 2 * H]
    assert [layer[1:] for layer in record["new_doc"]["layers"]] == [["paintlayer", f"U{depth}"]]
    result = pixels(krita, record["result"]["pixels"], 2 * W, 2 * H, depth)
    assert record["result"]["bounds"] == [0, 0, 2 * W, 2 * H]
    assert psnr(result[..., 2::-1] / (1 if depth == 8 else 257), lanczos_2x(source_pattern(8)), peak=255) > 25
    assert_the_model_ran(engine, result, depth, (krita.out / record["sent_profile"]).read_bytes())


def _check_region(krita, record, canvas, offset):
    """Inside the selection: the model's pixels, opaque; outside the upscaled mask: transparent."""
    mask = np.frombuffer((krita.out / record["mask"]).read_bytes(), np.uint8).reshape(H, W)
    cw, ch = canvas
    out = pixels(krita, record["result"]["pixels"], cw, ch)
    from engine.pixels import mask_resize

    mask_2x = np.round(mask_resize(mask.astype(np.float32) / 255, (2 * W, 2 * H)) * 255).astype(np.uint8)
    ox, oy = offset
    mask_on_canvas = np.zeros((ch, cw), np.uint8)
    ys, xs = slice(max(0, -oy), min(2 * H, ch - oy)), slice(max(0, -ox), min(2 * W, cw - ox))
    mask_on_canvas[ys.start + oy:ys.stop + oy, xs.start + ox:xs.stop + ox] = mask_2x[ys, xs]
    alpha = out[..., 3].astype(int)
    # Resampling kernels differ at the mask's very edge; a few pixels beyond it everything must be clear.
    near = mask_on_canvas > 0
    for _ in range(4):
        near = near | np.roll(near, 1, 0) | np.roll(near, -1, 0) | np.roll(near, 1, 1) | np.roll(near, -1, 1)
    assert np.all(alpha[~near] == 0), "pixels outside the selection are not transparent"
    full = mask_on_canvas == 255
    assert full.sum() > 400 and np.all(alpha[full] >= 254)
    expected = lanczos_2x(source_pattern(8))[ys, xs]
    got = np.zeros((ch, cw, 3))
    got[ys.start + oy:ys.stop + oy, xs.start + ox:xs.stop + ox] = expected
    model_rgb = out[..., 2::-1].astype(np.float64)
    assert psnr(model_rgb[full], got[full], peak=255) > 25
    plain = pixels(krita, record["plain"]["pixels"], cw, ch)
    assert np.array_equal(plain[..., 3], out[..., 3])  # same region, same soft edge
    change = np.abs(model_rgb[full] - plain[..., 2::-1].astype(np.float64)[full]).mean()
    assert change > 0.5, "the selection came back as the plain resize: the model did not run"


@in_versions("selection_resize")
def test_selection_only_with_resize_canvas_places_the_region_at_its_scaled_position(krita):
    record = krita("selection_resize")
    assert record["doc"]["size"] == [2 * W, 2 * H]
    assert len(record["doc"]["layers"]) == len(record["doc_before"]["layers"]) + 1
    x, y, w, h = record["selection_box"]
    bx, by, bw, bh = record["result"]["bounds"]
    # The layer holds the region only: within the scaled crop (selection plus context), covering the selection.
    assert bx <= 2 * x and by <= 2 * y and bx + bw >= 2 * (x + w) and by + bh >= 2 * (y + h)
    assert bw < 2 * W or bh < 2 * H or (bx, by) == (0, 0)
    _check_region(krita, record, (2 * W, 2 * H), (0, 0))


@in_versions("selection_new_document")
def test_selection_only_in_a_new_document_frames_the_selection(krita):
    record = krita("selection_new_document")
    x, y, w, h = record["selection_box"]
    assert record["new_doc"]["size"] == [2 * w, 2 * h]
    assert (krita.out / record["source_after"]).read_bytes() == (krita.out / record["source_before"]).read_bytes()
    assert record["doc"] == record["doc_before"]
    _check_region(krita, record, (2 * w, 2 * h), (-2 * x, -2 * y))


@in_versions("cancel")
def test_a_cancelled_job_stops_in_the_engine_and_leaves_the_document_unchanged(krita):
    record = krita("cancel")
    assert record["outcome"] == "cancelled"
    assert "progress" in record["events_seen"]
    assert record["engine_state"] == "cancelled"
    assert record["engine_client"] == "Krita"  # other apps' queue views name the job
    assert record["unchanged"]
    assert record["cancel_seconds"] < 30


@in_versions("close_document")
def test_closing_the_document_cancels_its_job(krita):
    record = krita("close_document")
    assert record["outcome"] == "cancelled"
    assert record["engine_state"] == "cancelled"


@in_versions("failure")
def test_a_failed_job_raises_the_engines_message_and_leaves_the_document_unchanged(krita):
    record = krita("failure")
    assert record["outcome"] == "failed"
    assert "no-such-model" in record["message"]
    assert record["unchanged"]


@in_versions("refusals")
def test_refused_inputs_get_messages_that_say_what_to_do(krita):
    record = krita("refusals")
    messages = record["messages"]
    assert "8-bit and 16-bit integer" in messages["float"] and "Convert Image Color Space" in messages["float"]
    assert "RGB" in messages["grey"] and "GRAYA" in messages["grey"]
    assert "Nothing is selected" in messages["no_selection"]
    assert "uprez serve" in messages["no_engine"]
    assert "more than 1" in messages["bad_scale"]
    assert record["unchanged"]


@in_versions("remote")
def test_connect_to_a_remote_engine_from_the_dialog_runs_the_job_there_and_switches_back(krita, tls_engine):
    record = krita("remote")
    port = tls_engine.url.rsplit(":", 1)[1]
    assert record["label_before"] == "local"
    refusals = record["refusals"]
    assert "someone may be in between, or the engine made a new certificate; ask for a new connection string" \
        in refusals["fingerprint"], refusals
    assert "does not accept this token (it was revoked" in refusals["token"], refusals
    assert "starts with uprez://" in refusals["malformed"], refusals
    assert not record["stored_after_refusals"]
    assert record["label_connected"] == record["dialog_engine"] == f"remote: 127.0.0.1:{port}"
    shots = os.environ.get("UPREZ_KRITA_REMOTE_SCREENSHOTS")  # a folder: docs/ refreshes krita-remote*.png
    if shots:
        for name in ("remote-refused.png", "remote-dialog.png"):
            (Path(shots) / f"krita-{name}").write_bytes((krita.out / name).read_bytes())
    assert record["mode"] == "0o600" and not record["kritarc_has_token"]
    # The job ran on the remote engine, and no local engine was started although bridge.json says how.
    assert record["new_doc"]["size"] == [2 * W, 2 * H] and not record["local_started"]
    from plugin.uprez_client import Client

    jobs = Client(tls_engine.connection_string()).jobs()
    assert [job["params"]["client"] for job in jobs if job["state"] == "done"].count("Krita") >= 1
    assert record["label_after"] == "local" and not record["stored_after_local"]


@pytest.mark.parametrize("version", ["host", kritas.NEWEST])
def test_the_dialog_renders_in_krita(krita_home, tmp_path, engine, version):
    """The screenshot in docs/ comes from here (UPREZ_KRITA_SCREENSHOT=docs/krita-dialog.png to refresh it: the
    newest Krita's)."""
    wanted = os.environ.get("UPREZ_KRITA_SCREENSHOT")
    shot = Path(wanted) if wanted and version == kritas.NEWEST else tmp_path / "dialog.png"
    Path(krita_home["XDG_RUNTIME_DIR"]).mkdir(mode=0o700, parents=True, exist_ok=True)
    done = run_in_krita("screenshot", dict(krita_home, UPREZ_CONFIG_DIR=str(engine.config_dir),
                                           UPREZ_KRITA_SCREENSHOT=str(shot),
                                           UPREZ_KRITA_SAMPLE=str(ROOT / "engine" / "data" / "sample.jpg")),
                        version, [krita_home["HOME"], shot.parent, engine.config_dir], timeout=300)
    assert shot.exists(), done.stdout[-2000:] + done.stderr[-2000:]
    with Image.open(shot) as image:
        width, height = image.size
        colours = len(np.unique(np.asarray(image.convert("RGB")).reshape(-1, 3), axis=0))
    assert width > 250 and height > 400 and colours > 1000  # a laid-out dialog with the photo's preview


if __name__ == "__main__":
    sys.exit(pytest.main([__file__, "-q"]))


# -- a non-sRGB document (issue 23): the document's profile travels with the pixels ------------------------
def _as_rgb_float(data: bytes, width: int, height: int, depth: str) -> np.ndarray:
    if depth == "F32":
        return np.frombuffer(data, "<f4").reshape(height, width, 4)[..., :3].astype(np.float32)
    bgra = np.frombuffer(data, "<u2").reshape(height, width, 4)
    return bgra[..., 2::-1].astype(np.float32) / 65535


@pytest.mark.parametrize(("krita", "scenario", "depth", "icc_name"), [
    pytest.param(v.values[0], scenario, depth, icc, id=f"{v.id}-{scenario}")
    for scenario, depth, icc in (("profiled_linear_u16", "U16", "sRGB-elle-V2-g10.icc"),
                                 ("profiled_clay_f32", "F32", "ClayRGB-elle-V2-g22.icc"))
    for v in versions_for(scenario)], indirect=["krita"])
def test_a_non_srgb_document_upscales_like_convert_upscale_convert_back(krita, engine, scenario, depth, icc_name):
    from photo_profiles import profile, transform  # transform: LittleCMS, relative colorimetric

    from plugin.uprez_client import Client

    icc = profile(icc_name)
    srgb_icc = ImageCms.ImageCmsProfile(ImageCms.createProfile("sRGB")).tobytes()
    record = krita(scenario)
    assert record["profile"] == icc_name and record["new_doc_profile"] == icc_name
    assert [layer[2] for layer in record["new_doc"]["layers"]] == [depth]
    assert (krita.out / record["sent_profile"]).read_bytes() == icc  # Krita's own bytes for the profile
    source = _as_rgb_float((krita.out / record["source"]).read_bytes(), W, H, depth)
    result = _as_rgb_float((krita.out / record["result"]["pixels"]).read_bytes(), 2 * W, 2 * H, depth)

    # By hand: convert to sRGB (16-bit), upscale on the same engine with the same settings, convert back.
    client = Client(engine.url, (engine.config_dir / "token").read_text().strip())
    in_srgb = np.round(np.clip(transform(source, icc, srgb_icc), 0, 1) * 65535).astype("<u2")
    data, meta = client.upscale_raw(in_srgb.tobytes(), W, H, "RGB", 16, scale=2.0, seed=7, client="Krita")
    upscaled = np.frombuffer(data, "<u2").reshape(2 * H, 2 * W, 3).astype(np.float32) / 65535
    expected = transform(upscaled, srgb_icc, icc)

    def shown(values: np.ndarray) -> np.ndarray:
        return np.clip(transform(values, icc, srgb_icc), 0, 1)

    assert psnr(shown(result), shown(expected)) >= 45.0
    # Without the profile the model would have seen the wrong tones: the same pixels sent as if sRGB.
    raw = np.round(np.clip(source, 0, 1) * 65535).astype("<u2")
    data, _ = client.upscale_raw(raw.tobytes(), W, H, "RGB", 16, scale=2.0, seed=7)
    unmanaged = np.frombuffer(data, "<u2").reshape(2 * H, 2 * W, 3).astype(np.float32) / 65535
    assert psnr(shown(unmanaged), shown(expected)) < psnr(shown(result), shown(expected)) - 6

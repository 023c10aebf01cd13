"""Does switching LoRAs between jobs leak? One real `uprez serve` process, jobs that alternate between LoRAs
(and none), the server's RSS after each.

    python bench/lora_switch.py [--switches 20] [--family flux-dev] [--size 32]

Starts the server on an ephemeral loopback port with a tiny random model, writes `--loras` random LoRAs for it
(diffusers and kohya formats alternating), then sends jobs through the bridges' client: job i names LoRA
i mod n at a weight that changes, every fourth names none (everything unloaded). RSS is read from /proc (Linux).
"""

from __future__ import annotations

import argparse
import os
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))  # run from a checkout without installing

from bench.soak import rss_mib, wait_for_engine  # noqa: E402

FAMILY_OF = {"flux-dev": "flux", "flux-schnell": "flux", "sd3": "sd3", "qwen-image": "qwen-image",
             "z-image": "z-image", "flux2-klein": "flux2", "chroma": "chroma"}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--switches", type=int, default=20)
    parser.add_argument("--family", default="flux-dev", choices=sorted(FAMILY_OF))
    parser.add_argument("--loras", type=int, default=4)
    parser.add_argument("--size", type=int, default=32, help="input side in pixels")
    # Large ranks so that a LoRA weighs megabytes even on the tiny model: a leaked adapter would show in the RSS.
    parser.add_argument("--rank", type=int, default=2048)
    args = parser.parse_args()

    import numpy as np

    from engine.backends.loader import quiet_libraries
    from engine.testing.tiny_loras import save_tiny_lora
    from engine.testing.tiny_models import build_tiny_pipeline, save_tiny_model

    quiet_libraries()
    with tempfile.TemporaryDirectory(prefix="uprez-lora-switch-") as tmp:
        config_dir = Path(tmp) / "config"
        os.environ["UPREZ_CONFIG_DIR"] = str(config_dir)  # the client below finds URL and token here
        os.environ.pop("UPREZ_URL", None)
        model = save_tiny_model(args.family, Path(tmp) / "model")
        transformer = build_tiny_pipeline(args.family).transformer
        loras = [str(save_tiny_lora(transformer, FAMILY_OF[args.family], Path(tmp) / f"lora{i}.safetensors",
                                    "diffusers" if i % 2 == 0 else "kohya", seed=i, rank=args.rank,
                                    scale=0.02)) for i in range(args.loras)]
        lora_mib = sum(Path(p).stat().st_size for p in loras) / len(loras) / 2**20
        server = subprocess.Popen([sys.executable, "-m", "engine.cli", "serve", "--port", "0", "--model", str(model),
                                   "--device", "cpu"], cwd=ROOT)
        try:
            wait_for_engine(config_dir, server)
            from plugin.uprez_client import Client

            client = Client()
            while not client.health()["model"]:
                time.sleep(0.1)
            rng = np.random.default_rng(0)
            pixels = rng.integers(0, 256, (args.size, args.size, 4), dtype=np.uint8).tobytes()

            def job(names: list[str], seed: int) -> None:
                job_id = client.submit_raw(pixels, args.size, args.size, "BGRA", 8, scale=2, seed=seed, loras=names)
                client.wait(job_id)
                client.result(job_id)
                client.cancel(job_id)

            for warm in range(args.loras):  # every adapter and code path once before the baseline
                job([f"{loras[warm]}:1"], warm)
            job([], 0)
            rows = [("baseline (after one job with each LoRA and one without)", 0, rss_mib(server.pid))]
            began = time.monotonic()
            for index in range(1, args.switches + 1):
                names = [] if index % 4 == 0 else [f"{loras[index % args.loras]}:{0.25 + 0.25 * (index % 4)}"]
                job(names, index)
                rows.append((f"switch {index}: {Path(names[0].rsplit(':', 1)[0]).name if names else 'no LoRA'}",
                             index, rss_mib(server.pid)))
            elapsed = time.monotonic() - began
        finally:
            server.send_signal(signal.SIGINT)
            server.wait(30)
    print(f"\n{args.switches} LoRA switches on tiny {args.family} through one uprez serve (CPU), rank-{args.rank} "
          f"LoRAs of {lora_mib:.1f} MiB each, {args.size}x{args.size} 2x jobs: {elapsed:.1f} s\n")
    print("| point | switches | server RSS (MiB) |")
    print("|---|---:|---:|")
    for label, count, rss in rows:
        print(f"| {label} | {count} | {rss:.1f} |")
    values = [rss for _, _, rss in rows]
    print(f"\nfrom the baseline to the last switch: {values[-1] - values[0]:+.1f} MiB; "
          f"range over the switches {min(values[1:]):.1f}-{max(values[1:]):.1f} MiB")
    return 0


if __name__ == "__main__":
    sys.exit(main())

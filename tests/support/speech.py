"""Speech at known times: sentences spoken by Debian's espeak-ng, put at chosen seconds of a
generated video (or an audio file) with ffmpeg; and the word error rate to score a transcript."""

from __future__ import annotations

import re
import shutil
import subprocess
from pathlib import Path

from tests.support.videos import ffmpeg_exe

Sentence = tuple[float, str]  # (where it starts, seconds; what is said)


def espeak() -> str:
    found = shutil.which("espeak-ng")
    if found is None:
        raise RuntimeError(
            "espeak-ng is not installed: `make setup-dev` installs it as root, else "
            "`sudo apt-get install espeak-ng`"
        )
    return found


def spoken(path: Path, sentences: list[Sentence], duration_s: float, video: bool = True) -> Path:
    """`path` (.mp4 with a gray H.264 picture, or audio alone for .wav / .m4a / .mp3) whose
    sound track says each sentence from its start time."""
    voices = []
    for number, (_, text) in enumerate(sentences):
        wav = path.with_name(f"{path.stem}-{number}.wav")
        subprocess.run([espeak(), "-s", "150", "-w", str(wav), text], check=True)
        voices.append(wav)
    inputs: list[str] = []
    if video:
        inputs += ["-f", "lavfi", "-i", f"color=c=gray:s=160x120:d={duration_s}:r=10"]
    for wav in voices:
        inputs += ["-i", str(wav)]
    first = 1 if video else 0
    delays = [
        f"[{first + i}:a]adelay={round(at * 1000)}:all=1[a{i}]"
        for i, (at, _) in enumerate(sentences)
    ]
    mixed = "".join(f"[a{i}]" for i in range(len(sentences)))
    graph = ";".join(delays) + f";{mixed}amix=inputs={len(sentences)}:normalize=0,apad[out]"
    maps = ["-map", "0:v", "-c:v", "libx264", "-pix_fmt", "yuv420p"] if video else []
    subprocess.run(
        [ffmpeg_exe(), "-loglevel", "error", "-y", *inputs, "-filter_complex", graph,
         *maps, "-map", "[out]", "-t", str(duration_s), "-ac", "1", str(path)],
        check=True,
    )  # fmt: skip
    for wav in voices:
        wav.unlink()
    return path


def silent(path: Path, duration_s: float, audio: bool = True) -> Path:
    """A gray video with a silent audio track (or none at all)."""
    sound = ["-f", "lavfi", "-i", "anullsrc=r=16000:cl=mono"] if audio else []
    subprocess.run(
        [ffmpeg_exe(), "-loglevel", "error", "-y", "-f", "lavfi", "-i",
         f"color=c=gray:s=160x120:d={duration_s}:r=10", *sound, "-t", str(duration_s),
         "-c:v", "libx264", "-pix_fmt", "yuv420p", str(path)],
        check=True,
    )  # fmt: skip
    return path


def words(text: str) -> list[str]:
    return re.findall(r"[a-z0-9']+", text.lower())


def word_error_rate(reference: str, hypothesis: str) -> float:
    """(substitutions + deletions + insertions) / words of the reference (Levenshtein on words)."""
    ref, hyp = words(reference), words(hypothesis)
    row = list(range(len(hyp) + 1))
    for i, want in enumerate(ref, 1):
        previous, row[0] = row[0], i
        for j, got in enumerate(hyp, 1):
            previous, row[j] = row[j], min(row[j] + 1, row[j - 1] + 1, previous + (want != got))
    return row[-1] / max(1, len(ref))

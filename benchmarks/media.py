"""Media preprocessing per clip (decode + frame sampling + face crops + audio clips + encoder input
tensors) vs PyAV decoding every video and audio frame of the same clip and nothing else."""
from __future__ import annotations

from .common import Context, Table, interleave, ratios, spread, target

TITLE = "media: preprocessing per clip vs PyAV decode-only"


def decode_only(path: str) -> int:
    """The floor any preprocessing pays: demux + decode of every video and audio frame."""
    import av

    n = 0
    with av.open(path) as container:
        streams = [s for s in container.streams if s.type in ("video", "audio")]
        for _frame in container.decode(*streams):
            n += 1
    return n


def run(ctx: Context) -> list[Table]:
    from nanoemox.modeling.presets import get_preset
    from nanoemox.modeling.processing import NanoEmoXProcessor
    from nanoemox.data.media import load_media

    config = get_preset(ctx.preset)
    tokenizer = _tokenizer(config)
    processor = NanoEmoXProcessor(config, tokenizer)
    mcfg = processor.media_config()
    clips = ctx.corpus()["clips"]

    no_faces = processor.media_config(detect_faces=False)

    def preprocess(cfg=mcfg) -> None:
        for p in clips:
            media = load_media(p, cfg)
            processor.media_tensors(media, processor.present_modalities(media))

    def decode() -> None:
        for p in clips:
            decode_only(p)

    times = interleave({"preprocess": preprocess, "no_faces": lambda: preprocess(no_faces), "decode": decode}, ctx.repeats)
    r = ratios(times["preprocess"], times["decode"])
    r_nf = ratios(times["no_faces"], times["decode"])
    import statistics

    t = Table(TITLE, ["case", "per-repetition ratio, median [min..max]", "target"])
    t.rows.append([f"preprocess / decode-only ({len(clips)} clips)", spread(r, unit="x"), target(statistics.median(r), 1.5, "<=")])
    t.rows.append(["preprocess without face detection / decode-only (where the time goes)", spread(r_nf, unit="x"), "-"])
    frames = decode_only(clips[0])
    t.notes.append(f"{len(clips)} SynthAffect mp4 clips, {ctx.repeats} interleaved repetitions after a warm-up; "
                   f"preprocessing = load_media ({mcfg.n_frames} frames at {mcfg.frame_size}px, faces at {mcfg.face_size}px, "
                   f"{mcfg.n_clips} x {mcfg.clip_seconds:g} s audio) + the processor's encoder tensors; "
                   f"decode-only = PyAV decoding all {frames} video+audio frames of a clip")
    return [t]


def _tokenizer(config):
    """The processor needs a tokenizer object only for text; media preprocessing never uses it."""
    if config.text.source == "random":
        from nanoemox.modeling.language_model import byte_tokenizer

        return byte_tokenizer()
    return None

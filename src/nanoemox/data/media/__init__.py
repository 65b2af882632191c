"""Media pipeline: any clip, sound file or picture -> the fixed-size arrays the encoders take.

`load_media(path, cfg)` returns a `MediaInput`:

- frames: `n_frames` RGB frames sampled uniformly over the clip (the frame nearest the centre of
  each of `n_frames` equal time segments), **letterboxed** to `frame_size` x `frame_size`: the whole
  picture is kept, scaled to fit, centred on black bars (nothing is cropped away, so an off-centre
  speaker is never cut out). `frame_fit="crop"` centre-crops instead.
- faces: one face track per clip (`nanoemox.data.faces.track_faces`). The largest face is found
  in one anchor frame (the middle one, else the first-quarter, third-quarter or next frame, at
  most 4, searched coarse to fine: see `faces.tracking`), then followed frame to frame, both ways, inside a small window
  around its last position: by template matching on a small grey copy, the detector running only
  where the match is weak (`face_follow="match"`, the default; `"detect"` runs the detector in
  every frame). Frames where the tracked face is not found are marked (`face_mask` False, zero
  crop): no face is invented and no other person's face is substituted.
- audio: the whole decoded track as 16 kHz mono float32 (capped at `max_seconds`), plus
  `n_clips` clips of `clip_seconds` each. A track longer than `n_clips * clip_seconds` gets clips
  spread uniformly over it (evenly spaced starts, first at 0, last ending at the end); a shorter
  track is cut into consecutive clips from the start, the last real one zero-padded and the rest
  pure padding (`audio_clip_mask` False).

Decoding uses PyAV: one demux pass, each stream decoded once (frame-threaded video decoding for
pictures of 320x240 and up), only the sampled frames converted to RGB (straight to a working
resolution by swscale), audio resampled by `av.AudioResampler` to 16 kHz mono float.
Non-reference frames no sample needs are not decoded (`skip_nonref`; on short clips the packets'
timestamps say which, and the sampled frames are bit-identical to decoding every frame).
Frames and crops are shrunk by area averaging over powers of two, then the rest
(`faces.boxes.shrink`). Decoding stops at `max_seconds`, so no
input can make it run unbounded. Videos longer than `seek_threshold_s` are sampled by seeking to
each target time instead of decoding everything.

Unusable input raises `MediaError(path, reason)`: missing, empty, truncated or corrupt, not a media
file, no usable stream, undecodable codec, resolution above `max_pixels`. A silent track or a
clip without a detectable face is a warning (`MediaInput.warnings`), not an error.

`media_from_arrays()` builds the same `MediaInput` from in-memory frames / waveform.

Modules: `types` (config, result, file types), `loading` (entry points, pictures, frame folders),
`decoding` (containers and streams), `streams` (the demux pass / seeks), `frames` (working
resolution, letterbox, face crops; detection and tracking live in `nanoemox.data.faces`), `audio`.
"""
from __future__ import annotations

from .audio import audio_clips
from .frames import fit_frame
from .loading import load_media, media_from_arrays
from .types import AUDIO_EXTS, IMAGE_EXTS, MEDIA_EXTS, SAMPLE_RATE, VIDEO_EXTS, MediaConfig, MediaInput, is_media_file

__all__ = [
    "MediaConfig",
    "MediaInput",
    "load_media",
    "media_from_arrays",
    "fit_frame",
    "audio_clips",
    "is_media_file",
    "SAMPLE_RATE",
    "VIDEO_EXTS",
    "AUDIO_EXTS",
    "IMAGE_EXTS",
    "MEDIA_EXTS",
]

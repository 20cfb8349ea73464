"""The most memory a line's frames may take, from its settings: the figure ``status`` and the metrics show.

Frames are held in six places, each bounded in bytes by a setting: ZeroMQ's queue of messages not yet taken
(per connected camera: the frames socket's high-water mark, ``pipeline.receive_bytes`` made a count, times
``transport.max_message_bytes``), the frame ingest is decoding (``pipeline.max_image_pixels``), the scoring
queue (``pipeline.queue_bytes``), the micro-batch being scored, the picture queue (``pipeline.pictures_bytes``)
and the picture being written (``pipeline.picture_side``). Queued frames are kept at the model's input plus a
bounded picture, never as decoded originals. What the scorer holds (model, window, judges) is not counted:
it is what the line holds before a burst, and a burst adds at most the total to it.
"""

from __future__ import annotations

from daemon.config import DaemonConfig

DECODE_BYTES_PER_PIXEL = 18  # decoding a frame and keeping its input and picture: PIL's 4-byte pixels twice (load,
# convert), the RGB array, and the copy its picture is shrunk from; 16.8 measured for a 12 MP JPEG (docs/benchmarks.md)
PICTURE_BYTES_PER_PIXEL = 140  # writing a picture: its heatmap in floats, colours, the overlay and the PNG; 134
# measured per pixel of a 1024 x 768 picture


def input_pixels(config: DaemonConfig, input_size: int) -> int:
    """Pixels kept of a queued frame for scoring: the model's square input (``input_size`` a side) or, with tiles,
    the frame at the tiling resolution (the native frame, up to ``max_image_pixels``, for resolution 0)."""
    tiles, most = config.tiles, config.pipeline.max_image_pixels
    if not tiles.enabled:
        return input_size**2
    return min(tiles.resolution**2, most) if tiles.resolution else most


def frame_memory(config: DaemonConfig, input_size: int) -> dict[str, int]:
    """Bytes each place may hold of frames, and ``total``, with one camera connected (each further camera adds
    ``receive_per_camera``); ``input_size`` is the side of the model's square input."""
    pipeline, transport = config.pipeline, config.transport
    hwm = pipeline.frames_hwm(transport.max_message_bytes, transport.hwm)
    kept = 3 * input_pixels(config, input_size) + 3 * pipeline.picture_side**2  # a queued frame: input and picture
    parts = {
        "receive_per_camera": hwm * transport.max_message_bytes,
        "decoding": 2 * transport.max_message_bytes + DECODE_BYTES_PER_PIXEL * pipeline.max_image_pixels,
        "scoring_queue": max(pipeline.queue_bytes, kept),  # an empty queue takes any one frame
        "scoring": pipeline.micro_batch * kept,
        "pictures_queue": max(pipeline.pictures_bytes, 3 * pipeline.picture_side**2),
        "picture_writing": PICTURE_BYTES_PER_PIXEL * pipeline.picture_side**2,
    }
    return {**parts, "total": sum(parts.values())}

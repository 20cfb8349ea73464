"""High-resolution tiles: each frame is cut into overlapping tiles, scored besides the whole frame, and the tile
maps are stitched and fused with the whole frame's map (``[tiles]`` settings, ``docs/online.md``)."""

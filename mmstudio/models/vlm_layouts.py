"""Where each image token of a chat model's input sits on the picture: one function per architecture's layout.

Each takes the positions in input_ids of one image's tokens (and what the processor reports about the picture)
and returns them as a (rows, cols) array laid out as the picture they show, raising ValueError where the tokens
do not make the layout. mmstudio/models/vlm.py picks the function by the checkpoint's model_type.
"""

from __future__ import annotations

import numpy as np


def image_token_grid(config, count: int) -> tuple[int, int, int]:
    """(first image token that is a patch, rows, cols) for `count` image tokens of one image."""
    vision = config.vision_config
    side = vision.image_size // vision.patch_size
    skip = 1 if getattr(config, "vision_feature_select_strategy", "default") == "full" else 0
    if count - skip != side * side:
        raise ValueError(f"{count} image tokens do not make the {side} x {side} patch grid")
    return skip, side, side


def idefics3_cells(ids: np.ndarray, positions: np.ndarray, tiles: dict[int, tuple[int, int]],
                   global_marker: int | None) -> np.ndarray:
    """Idefics3's layout: the picture split into tiles (each after its `<row_R_col_C>` marker) and a global
    view (after `<global-img>`), each tile's tokens a pixel-shuffled square grid, row-major. The tiles
    side by side make the map (they cover the whole picture, at the finer scale); a picture not split
    has the global view alone."""
    owner: dict[int, object] = {}  # image token position -> (row, col) of its tile, or "global"
    images = frozenset(positions.tolist())
    current: object = None
    for position, token in enumerate(ids.tolist()):
        if token in tiles:
            current = tiles[token]
        elif token == global_marker:
            current = "global"
        elif position in images:
            owner[position] = current
    groups: dict[object, list[int]] = {}
    for position in positions.tolist():
        groups.setdefault(owner.get(position), []).append(position)
    side = int(round(len(next(iter(groups.values()))) ** 0.5)) if groups else 0
    if not groups or any(len(g) != side * side for g in groups.values()):
        raise ValueError("image tokens that do not make square tiles")
    placed = {k: v for k, v in groups.items() if isinstance(k, tuple)}
    if not placed:
        return np.asarray(groups.get("global") or next(iter(groups.values()))).reshape(side, side)
    rows, cols = max(r for r, _ in placed), max(c for _, c in placed)
    cells = np.zeros((rows * side, cols * side), np.int64)
    for (r, c), members in placed.items():
        cells[(r - 1) * side:r * side, (c - 1) * side:c * side] = np.asarray(members).reshape(side, side)
    return cells


def llava_next_cells(config, positions: np.ndarray, image_size: list[int]) -> np.ndarray:
    """LLaVA-NeXT's layout: the base view's grid first, then the high-resolution tiles' patches as one grid,
    padding cut away ("unpad"), row by row, each row ended by a newline token. The map is that grid (it
    covers the picture as it is, at the finer scale); transformers' own functions give its shape."""
    import torch
    from transformers.models.llava_next.modeling_llava_next import get_anyres_image_grid_shape, unpad_image

    side = config.vision_config.image_size // config.vision_config.patch_size
    base = side * side
    if len(positions) == base + 1:  # one tile: the base view and its newline
        return positions[:base].reshape(side, side)
    tiles_high, tiles_wide = get_anyres_image_grid_shape(image_size, config.image_grid_pinpoints,
                                                         config.vision_config.image_size)
    rows, cols = unpad_image(torch.zeros(1, tiles_high * side, tiles_wide * side),
                             torch.as_tensor(image_size)).shape[1:]
    rest = positions[base:]
    if len(rest) != rows * (cols + 1):
        raise ValueError(f"{len(rest)} image tokens do not make LLaVA-NeXT's {rows} x {cols} grid and newlines")
    return rest.reshape(rows, cols + 1)[:, :cols]


def merged_grid_cells(positions: np.ndarray, grid_thw: list[int], merge: int) -> np.ndarray:
    """Qwen2-VL's and Qwen2.5-VL's layout: a picture at its own resolution cut into (grid_h, grid_w) patches,
    each merge x merge block of them one image token, the tokens in row-major order of the blocks. `grid_thw` is
    the processor's `image_grid_thw` for the picture: a picture is one frame (grid_t 1; a video has more)."""
    frames, high, wide = grid_thw
    rows, cols = high // merge, wide // merge
    if frames != 1 or len(positions) != rows * cols:
        raise ValueError(f"{len(positions)} image tokens do not make one frame of {rows} x {cols} merged patches")
    return positions.reshape(rows, cols)


def davit_grid(vision, height: int, width: int) -> tuple[int, int]:
    """(rows, cols) of the feature map Florence-2's DaViT makes of a `height` x `width` picture: each stage a
    strided convolution (768 px through strides 4, 2, 2, 2: 24 x 24)."""
    for kernel, stride, pad in zip(vision.patch_size, vision.patch_stride, vision.patch_padding):
        height, width = (height + 2 * pad - kernel) // stride + 1, (width + 2 * pad - kernel) // stride + 1
    return height, width


def florence2_cells(positions: np.ndarray, rows: int, cols: int) -> np.ndarray:
    """Florence-2's layout: one token pooled over the whole feature map, then the map's cells row-major (its
    projector: the spatial mean, then the flattened map). The map is the cells; the pooled token is no place."""
    if len(positions) != 1 + rows * cols:
        raise ValueError(f"{len(positions)} image tokens are not one pooled token and a {rows} x {cols} grid")
    return positions[1:].reshape(rows, cols)

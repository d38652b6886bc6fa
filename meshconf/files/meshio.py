"""Coloured meshes to files: binary PLY and glTF binary (.glb), written atomically, no extra dependency."""

from __future__ import annotations

import json
import struct

import numpy as np

from .imageio import write_atomic


def rgb_bytes(vertex_rgb: np.ndarray) -> np.ndarray:
    """RGB in 0-1 -> uint8, rounded (the one conversion the renders and the mesh files share)."""
    return np.clip(np.asarray(vertex_rgb, dtype=np.float64) * 255, 0, 255).round().astype(np.uint8)


def ply_bytes(vertices: np.ndarray, faces: np.ndarray, vertex_rgb: np.ndarray) -> bytes:
    vertices = np.asarray(vertices, dtype="<f4")
    faces = np.asarray(faces, dtype="<i4")
    header = (f"ply\nformat binary_little_endian 1.0\ncomment meshconf confidence mesh\n"
              f"element vertex {len(vertices)}\nproperty float x\nproperty float y\nproperty float z\n"
              f"property uchar red\nproperty uchar green\nproperty uchar blue\n"
              f"element face {len(faces)}\nproperty list uchar int vertex_indices\nend_header\n").encode()
    vdtype = np.dtype([("p", "<f4", 3), ("c", "u1", 3)])
    vrec = np.empty(len(vertices), vdtype)
    vrec["p"], vrec["c"] = vertices, rgb_bytes(vertex_rgb)
    fdtype = np.dtype([("n", "u1"), ("i", "<i4", 3)])
    frec = np.empty(len(faces), fdtype)
    frec["n"], frec["i"] = 3, faces
    return header + vrec.tobytes() + frec.tobytes()


def srgb_to_linear(rgb: np.ndarray) -> np.ndarray:
    """The sRGB transfer function undone (IEC 61966-2-1): glTF's COLOR_0 is linear, our colours are sRGB."""
    c = np.clip(np.asarray(rgb, dtype=np.float64), 0, 1)
    return np.where(c <= 0.04045, c / 12.92, ((c + 0.055) / 1.055) ** 2.4)


def vertex_normals(vertices: np.ndarray, faces: np.ndarray) -> np.ndarray:
    """Area-weighted unit vertex normals (smooth shading); a vertex on no face gets +z."""
    v = np.asarray(vertices, dtype=np.float64)
    f = np.asarray(faces, dtype=np.int64)
    face_normals = np.cross(v[f[:, 1]] - v[f[:, 0]], v[f[:, 2]] - v[f[:, 0]])
    normals = np.zeros_like(v)
    for k in range(3):
        np.add.at(normals, f[:, k], face_normals)
    length = np.linalg.norm(normals, axis=1, keepdims=True)
    return np.where(length > 0, normals / np.where(length > 0, length, 1), np.array([0.0, 0.0, 1.0]))


def glb_bytes(vertices: np.ndarray, faces: np.ndarray, vertex_rgb: np.ndarray) -> bytes:
    """A glTF 2.0 binary: one mesh with POSITION, NORMAL (smooth), COLOR_0 (linear, normalised uint16, as glTF
    defines vertex colours) and uint32 indices, and a matte non-metallic material, so standard viewers show the
    confidence colours as the renders do."""
    from ..constants import VERSION

    positions = np.ascontiguousarray(vertices, dtype="<f4")
    normals = np.ascontiguousarray(vertex_normals(vertices, faces), dtype="<f4")
    linear = srgb_to_linear(vertex_rgb)
    colours = np.ascontiguousarray(np.concatenate([(linear * 65535).round(), np.full((len(positions), 1), 65535)],
                                                  1).astype("<u2"))
    indices = np.ascontiguousarray(faces, dtype="<u4").reshape(-1)
    chunks = [positions.tobytes(), normals.tobytes(), colours.tobytes(), indices.tobytes()]
    offsets, blob = [], b""
    for chunk in chunks:
        offsets.append(len(blob))
        blob += chunk + b"\0" * (-len(chunk) % 4)
    n = len(positions)
    gltf = {
        "asset": {"version": "2.0", "generator": f"meshconf {VERSION}"},
        "scene": 0, "scenes": [{"nodes": [0]}], "nodes": [{"mesh": 0}],
        "materials": [{"name": "confidence", "pbrMetallicRoughness": {"baseColorFactor": [1, 1, 1, 1],
                                                                       "metallicFactor": 0.0, "roughnessFactor": 0.8}}],
        "meshes": [{"primitives": [{"attributes": {"POSITION": 0, "NORMAL": 1, "COLOR_0": 2}, "indices": 3,
                                    "material": 0}]}],
        "buffers": [{"byteLength": len(blob)}],
        "bufferViews": [
            {"buffer": 0, "byteOffset": offsets[0], "byteLength": len(chunks[0]), "target": 34962},
            {"buffer": 0, "byteOffset": offsets[1], "byteLength": len(chunks[1]), "target": 34962},
            {"buffer": 0, "byteOffset": offsets[2], "byteLength": len(chunks[2]), "target": 34962},
            {"buffer": 0, "byteOffset": offsets[3], "byteLength": len(chunks[3]), "target": 34963}],
        "accessors": [
            {"bufferView": 0, "componentType": 5126, "count": n, "type": "VEC3",
             "min": positions.min(0).tolist(), "max": positions.max(0).tolist()},
            {"bufferView": 1, "componentType": 5126, "count": n, "type": "VEC3"},
            {"bufferView": 2, "componentType": 5123, "normalized": True, "count": n, "type": "VEC4"},
            {"bufferView": 3, "componentType": 5125, "count": len(indices), "type": "SCALAR"}],
    }
    text = json.dumps(gltf, separators=(",", ":")).encode()
    text += b" " * (-len(text) % 4)
    body = struct.pack("<I4s", len(text), b"JSON") + text + struct.pack("<I4s", len(blob), b"BIN\0") + blob
    return struct.pack("<4sII", b"glTF", 2, 12 + len(body)) + body


def write_ply(path, vertices, faces, vertex_rgb) -> None:
    write_atomic(path, ply_bytes(vertices, faces, vertex_rgb))


def write_glb(path, vertices, faces, vertex_rgb) -> None:
    write_atomic(path, glb_bytes(vertices, faces, vertex_rgb))

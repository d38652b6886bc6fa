"""A slow, literal transcription of pytorch-openpose's `Body` decoding (REFERENCE.md §E), used only as a test oracle.

It follows the reference loop for loop so that the fast, vectorised decoder in `meshconf.openpose` can be compared
with it on maps no golden covers (random weights, random synthetic maps, edge cases). Do not optimise this file.
"""

from __future__ import annotations

import math

import cv2
import numpy as np
from scipy.ndimage import gaussian_filter

LIMB_SEQ = [[2, 3], [2, 6], [3, 4], [4, 5], [6, 7], [7, 8], [2, 9], [9, 10], [10, 11], [2, 12], [12, 13], [13, 14],
            [2, 1], [1, 15], [15, 17], [1, 16], [16, 18], [3, 17], [6, 18]]
MAP_IDX = [[31, 32], [39, 40], [33, 34], [35, 36], [41, 42], [43, 44], [19, 20], [21, 22], [23, 24], [25, 26],
           [27, 28], [29, 30], [47, 48], [49, 50], [53, 54], [51, 52], [55, 56], [37, 38], [45, 46]]


def preprocess(ori_img):
    multiplier = 0.5 * 368 / ori_img.shape[0]
    scaled = cv2.resize(ori_img, (0, 0), fx=multiplier, fy=multiplier, interpolation=cv2.INTER_CUBIC)
    h, w = scaled.shape[:2]
    pad_down, pad_right = (8 - h % 8) % 8, (8 - w % 8) % 8
    padded = np.concatenate([scaled, np.full((pad_down, w, 3), 128, scaled.dtype)], axis=0)
    padded = np.concatenate([padded, np.full((padded.shape[0], pad_right, 3), 128, scaled.dtype)], axis=1)
    net_input = np.transpose(np.float32(padded[:, :, :, np.newaxis]), (3, 2, 0, 1)) / 256 - 0.5
    return np.ascontiguousarray(net_input), (0, 0, pad_down, pad_right)


def decode(net_paf, net_heatmap, image_hw, return_debug=False):
    """net_paf (1,38,h,w), net_heatmap (1,19,h,w) float32 -> candidate, subset (and intermediates)."""
    H, W = int(image_hw[0]), int(image_hw[1])
    ph, pw = net_heatmap.shape[2] * 8, net_heatmap.shape[3] * 8
    # the padding the reference would have applied for an image of this size
    multiplier = 0.5 * 368 / H
    h = int(round(H * multiplier))
    w = int(round(W * multiplier))
    pad_down, pad_right = (8 - h % 8) % 8, (8 - w % 8) % 8
    assert (h + pad_down, w + pad_right) == (ph, pw), ((h, w), (ph, pw))

    heatmap = np.transpose(np.squeeze(net_heatmap), (1, 2, 0))
    heatmap = cv2.resize(heatmap, (0, 0), fx=8, fy=8, interpolation=cv2.INTER_CUBIC)
    heatmap = heatmap[:ph - pad_down, :pw - pad_right, :]
    heatmap = cv2.resize(heatmap, (W, H), interpolation=cv2.INTER_CUBIC)
    paf = np.transpose(np.squeeze(net_paf), (1, 2, 0))
    paf = cv2.resize(paf, (0, 0), fx=8, fy=8, interpolation=cv2.INTER_CUBIC)
    paf = paf[:ph - pad_down, :pw - pad_right, :]
    paf = cv2.resize(paf, (W, H), interpolation=cv2.INTER_CUBIC)
    heatmap_avg = np.zeros((H, W, 19)) + heatmap
    paf_avg = np.zeros((H, W, 38)) + paf

    all_peaks = []
    peak_counter = 0
    for part in range(18):
        map_ori = heatmap_avg[:, :, part]
        one_heatmap = gaussian_filter(map_ori, sigma=3)
        map_left = np.zeros(one_heatmap.shape)
        map_left[1:, :] = one_heatmap[:-1, :]
        map_right = np.zeros(one_heatmap.shape)
        map_right[:-1, :] = one_heatmap[1:, :]
        map_up = np.zeros(one_heatmap.shape)
        map_up[:, 1:] = one_heatmap[:, :-1]
        map_down = np.zeros(one_heatmap.shape)
        map_down[:, :-1] = one_heatmap[:, 1:]
        peaks_binary = np.logical_and.reduce((one_heatmap >= map_left, one_heatmap >= map_right,
                                              one_heatmap >= map_up, one_heatmap >= map_down, one_heatmap > 0.1))
        peaks = list(zip(np.nonzero(peaks_binary)[1], np.nonzero(peaks_binary)[0]))
        peaks_with_score = [x + (map_ori[x[1], x[0]],) for x in peaks]
        ids = range(peak_counter, peak_counter + len(peaks))
        all_peaks.append([peaks_with_score[i] + (ids[i],) for i in range(len(ids))])
        peak_counter += len(peaks)

    connection_all = []
    special_k = []
    mid_num = 10
    for k in range(len(MAP_IDX)):
        score_mid = paf_avg[:, :, [x - 19 for x in MAP_IDX[k]]]
        candA = all_peaks[LIMB_SEQ[k][0] - 1]
        candB = all_peaks[LIMB_SEQ[k][1] - 1]
        nA, nB = len(candA), len(candB)
        if nA != 0 and nB != 0:
            connection_candidate = []
            for i in range(nA):
                for j in range(nB):
                    vec = np.subtract(candB[j][:2], candA[i][:2])
                    norm = math.sqrt(vec[0] * vec[0] + vec[1] * vec[1])
                    norm = max(0.001, norm)
                    vec = np.divide(vec, norm)
                    startend = list(zip(np.linspace(candA[i][0], candB[j][0], num=mid_num),
                                        np.linspace(candA[i][1], candB[j][1], num=mid_num)))
                    vec_x = np.array([score_mid[int(round(startend[I][1])), int(round(startend[I][0])), 0]
                                      for I in range(len(startend))])
                    vec_y = np.array([score_mid[int(round(startend[I][1])), int(round(startend[I][0])), 1]
                                      for I in range(len(startend))])
                    score_midpts = np.multiply(vec_x, vec[0]) + np.multiply(vec_y, vec[1])
                    score_with_dist_prior = sum(score_midpts) / len(score_midpts) + min(0.5 * H / norm - 1, 0)
                    criterion1 = len(np.nonzero(score_midpts > 0.05)[0]) > 0.8 * len(score_midpts)
                    criterion2 = score_with_dist_prior > 0
                    if criterion1 and criterion2:
                        connection_candidate.append(
                            [i, j, score_with_dist_prior, score_with_dist_prior + candA[i][2] + candB[j][2]])
            connection_candidate = sorted(connection_candidate, key=lambda x: x[2], reverse=True)
            connection = np.zeros((0, 5))
            for c in range(len(connection_candidate)):
                i, j, s = connection_candidate[c][0:3]
                if i not in connection[:, 3] and j not in connection[:, 4]:
                    connection = np.vstack([connection, [candA[i][3], candB[j][3], s, i, j]])
                    if len(connection) >= min(nA, nB):
                        break
            connection_all.append(connection)
        else:
            special_k.append(k)
            connection_all.append([])

    subset = -1 * np.ones((0, 20))
    candidate = np.array([item for sublist in all_peaks for item in sublist])
    for k in range(len(MAP_IDX)):
        if k not in special_k:
            partAs = connection_all[k][:, 0]
            partBs = connection_all[k][:, 1]
            indexA, indexB = np.array(LIMB_SEQ[k]) - 1
            for i in range(len(connection_all[k])):
                found = 0
                subset_idx = [-1, -1]
                for j in range(len(subset)):
                    if subset[j][indexA] == partAs[i] or subset[j][indexB] == partBs[i]:
                        subset_idx[found] = j
                        found += 1
                if found == 1:
                    j = subset_idx[0]
                    if subset[j][indexB] != partBs[i]:
                        subset[j][indexB] = partBs[i]
                        subset[j][-1] += 1
                        subset[j][-2] += candidate[partBs[i].astype(int), 2] + connection_all[k][i][2]
                elif found == 2:
                    j1, j2 = subset_idx
                    membership = ((subset[j1] >= 0).astype(int) + (subset[j2] >= 0).astype(int))[:-2]
                    if len(np.nonzero(membership == 2)[0]) == 0:
                        subset[j1][:-2] += (subset[j2][:-2] + 1)
                        subset[j1][-2:] += subset[j2][-2:]
                        subset[j1][-2] += connection_all[k][i][2]
                        subset = np.delete(subset, j2, 0)
                    else:
                        subset[j1][indexB] = partBs[i]
                        subset[j1][-1] += 1
                        subset[j1][-2] += candidate[partBs[i].astype(int), 2] + connection_all[k][i][2]
                elif not found and k < 17:
                    row = -1 * np.ones(20)
                    row[indexA] = partAs[i]
                    row[indexB] = partBs[i]
                    row[-1] = 2
                    row[-2] = sum(candidate[connection_all[k][i, :2].astype(int), 2]) + connection_all[k][i][2]
                    subset = np.vstack([subset, row])
    delete_idx = []
    for i in range(len(subset)):
        if subset[i][-1] < 4 or subset[i][-2] / subset[i][-1] < 0.4:
            delete_idx.append(i)
    subset_before = subset.copy()
    subset = np.delete(subset, delete_idx, axis=0)
    if not return_debug:
        return candidate, subset
    return candidate, subset, dict(heatmap_avg=heatmap_avg, paf_avg=paf_avg, special_k=special_k,
                                   subset_before_delete=subset_before, deleteIdx=delete_idx,
                                   connection_all=connection_all, all_peaks=all_peaks)

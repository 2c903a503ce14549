"""The browser viewer (viser): watch a run train, fly through a trained field, keyframe a
camera path, export a cropped mesh and a video.

The top room: it combines the jobs (opening a run, training, mesh and video export) with a web
server, so nothing in the package imports it; `tools/view.py` and `train_nerf.py --viewer` do.
"""

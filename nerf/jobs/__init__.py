"""What a command runs: the only layer that reaches across training, export and super-resolution.

    run         open a run directory (config, scene, renderer of the newest checkpoint)
    train       the main job: train, score the test split, orbit video and mesh
    render      the test split with metrics, camera-path videos, the SR post-pass
    mesh        a run's coloured mesh (iso level from its renders, unseen pockets filled)
    mesh_bench  a run's mesh counted and, on the demo scene, scored against the ground truth
    sr_bench    upscalers scored on a run's renders and on box-filtered photos

The scripts (train_nerf.py, render.py, tools/) parse options and call one function here.
"""

"""Conventions used everywhere in the library (stated once, here).

Axes and cameras
    Camera-to-world matrices `c2w [C, 4, 4]` float32 use the OpenCV convention: x right, y down,
    z forward (the camera looks along +z). Loaders convert their format once, in one named
    function (`opengl_to_opencv` for Blender / instant-ngp / nerfstudio, `llff_to_opencv` for
    LLFF's [down, right, backwards] order; COLMAP is OpenCV already, world-to-camera).

Intrinsics
    Per camera: fx, fy, cx, cy in pixels; pixel centres at +0.5, so the pixel with integer index
    (i, j) (column i, row j) has its centre at (i + 0.5, j + 0.5). Optional OpenCV distortion
    (k1, k2, k3, k4, p1, p2) with camera model "pinhole", "opencv" or "fisheye" (equidistant).

World units and the scene box
    After loading, every scene is normalised by a similarity (scale s, rotation R, translation t)
    recorded in `Scene.transform` (4x4, original -> normalised) so that its content fits the
    axis-aligned box `aabb [2, 3]` (min row, max row). Exported meshes are mapped back with its
    inverse.

Rays and samples
    Rays are origins `[N, 3]` and unit directions `[N, 3]`, so a distance t along a ray is in
    world units. Samples are packed: flat `[S]` tensors with `ray_indices [S]` int64 sorted
    ascending, plus `n_rays`. Padded `[N, K]` layouts appear only inside samplers and tests.

Images
    float32 `[H, W, 3]` in [0, 1] inside the library; uint8 on disk and in the dataset cache
    (`Scene.images [C, H, W, 3|4]`; images of different sizes are zero-padded to the largest,
    each camera holding its own size). RGBA images are composited on a background colour in linear
    [0, 1] values (no gamma change).

Shape letters used in comments
    N rays, S samples, K samples per ray, C cameras, H/W image size, L levels, F features,
    P points, V vertices.
"""

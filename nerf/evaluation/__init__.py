"""Evaluation, in one home: image metrics (PSNR, SSIM, LPIPS), held-out views scored, upscalers
scored, and surface metrics (Chamfer distances, exact closest points). Ground truth that belongs
to a scene (the demo's) lives beside that scene, in nerf.datasets.demo_truth."""

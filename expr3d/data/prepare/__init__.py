"""Prepare real face datasets (AffectNet, RaFD, any `DIR/<expression>/` folder) as expr3d RGB-D TFRecords.

CLI: `python -m expr3d.data.prepare --dataset=affectnet|rafd|folder --images=DIR --output=DIR ...` (docs/prepare.md).
Modules: readers (datasets -> items), meshes (OBJ/PLY), depth_sources (depth_dir / mesh_dir / model), quality (scores,
thresholds), review (contact sheets, reject list), build (plan, parallel resumable run, report). Photos are read,
faces found and crops warped by expr3d.imaging (shared with deployment).
"""

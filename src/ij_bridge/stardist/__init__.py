"""StarDist (Schmidt et al. 2018, Weigert et al. 2020) in PyTorch: star-convex
object detection for 2D and 3D nuclei. No Java.

Modules: :mod:`.geometry` (rays, star distances, object probabilities,
polygons/polyhedra, rendering), :mod:`.nms` (non-maximum suppression),
:mod:`.model` (network, training, prediction, model files),
:mod:`.thresholds` (threshold optimisation).
"""

from .config import StarDistConfig
from .geometry import (
    Rays, dist_to_coord, dist_to_coord_3d, edt_prob, fill_label_holes, polygon_areas,
    polygons_to_label, polyhedra_to_label, polyhedron_volumes, ray_angles, rays_golden_spiral,
    star_dist, star_dist_2d, star_dist_3d,
)
from .model import StarDist2D, StarDist3D, bundled_models, normalize_percentiles
from .nms import non_maximum_suppression, non_maximum_suppression_3d, polygon_intersection_areas
from .thresholds import optimize_thresholds

__all__ = [
    "StarDist2D", "StarDist3D", "StarDistConfig", "optimize_thresholds", "bundled_models",
    "normalize_percentiles", "Rays", "ray_angles", "rays_golden_spiral", "star_dist",
    "star_dist_2d", "star_dist_3d", "edt_prob", "fill_label_holes", "dist_to_coord",
    "dist_to_coord_3d", "polygon_areas", "polygons_to_label", "polyhedra_to_label",
    "polyhedron_volumes", "non_maximum_suppression", "non_maximum_suppression_3d",
    "polygon_intersection_areas",
]

"""Trajectory viewer: eval runs, PRS folders and verl rollout dumps as a static HTML site (`hyperseyes view`).

sources.py finds what a path holds; load_eval / load_prs / load_rollouts turn each source into `model.Episode`s
(transcript.py recovers turns, boxes, crops and hits from the text; items.py finds input images and gold answers
in the benchmark file); steps.py makes the per-step summary; render_episode / render_index write the pages,
thumbs.py the thumbnails; site.py builds it all in parallel. Pure: no verl import.
"""
from .build import build_from_paths
from .model import Episode
from .site import build_site

__all__ = ["Episode", "build_from_paths", "build_site"]

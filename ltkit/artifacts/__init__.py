"""The artefacts between the stages: where each stage writes (`layout`), and the readers of what the next
stage needs: the neighbour map (`neighbour_map`), the crawl manifest (`manifest`) and the accepted set
(`accepted`). Every stage imports from here and from nothing of another stage.
"""
from ltkit.artifacts.accepted import (ACCEPTED_COLUMNS, DECISION_FIELDS, accepted_for_config, load_accepted,
                                      load_settings, training_overrides)
from ltkit.artifacts.layout import (ACCEPTED, ACCEPTED_MAP, FILTER_JSON, FILTER_MANIFEST, LLM_CACHE, MANIFEST,
                                    NEIGHBOUR_MAP, aux_images_path, crawl_dir, neighbour_dir, neighbour_map_path)
from ltkit.artifacts.manifest import manifest_files, read_manifest
from ltkit.artifacts.neighbour_map import NeighbourMap, load_neighbour_map

__all__ = ["ACCEPTED_COLUMNS", "DECISION_FIELDS", "accepted_for_config", "load_accepted", "load_settings",
           "training_overrides", "ACCEPTED", "ACCEPTED_MAP", "FILTER_JSON", "FILTER_MANIFEST", "LLM_CACHE", "MANIFEST",
           "NEIGHBOUR_MAP", "aux_images_path", "crawl_dir", "neighbour_dir", "neighbour_map_path", "manifest_files",
           "read_manifest", "NeighbourMap", "load_neighbour_map"]

"""The crawl stage (paper Sec. 3.1): search images of the auxiliary categories and download them.

`image_search` (ddgs, the local captioned pool, a folder + CSV; cached), `policy` (which addresses and
schemes may be fetched), `download` (the polite, safe asyncio downloader), `store` (content-addressed
atomic image files), `manifest` (`manifest.jsonl`: every URL accounted for, resumable, shards merged),
`pool_server` (the offline pool served over real HTTP) and `retrieve` (the stage in one call,
`crawl_neighbours`, and `python -m ltkit crawl`).
The downloader imports aiohttp: import `download` / `retrieve` by name.
"""
from ltkit.artifacts.manifest import hit_key, merge_manifests, read_manifest
from ltkit.crawl.image_search import DDGSEngine, Hit, PoolEngine, SearchCache, SearchError

__all__ = ["DDGSEngine", "Hit", "PoolEngine", "SearchCache", "SearchError", "hit_key", "merge_manifests",
           "read_manifest"]

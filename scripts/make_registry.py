"""Regenerate lipkit/registry.csv from the provenance table of the data mirror.

Usage: python scripts/make_registry.py ../shared/data/SOURCES.md > lipkit/registry.csv

Each image gets a short name, its path in the mirror (and in the cache), the public URL of the
exact commit it was copied from, and its sha256.
"""
import csv
import re
import sys

COMMITS = {  # commit each source repository was read at (SOURCES.md, "Source repositories")
    "majedelhelou/denoising_datasets": "58234876fef6f1b56306705c78dfd40cdb837b86",
    "DmitryUlyanov/deep-image-prior": "042e0d4c1e93f4b1eb0932781de55b8cff5e0f40",
    "DmitryUlyanov/dmitryulyanov.github.io": "eb9ce4fae8917eabdd345b3244a3c53f44595ab8",
}
SHORT = {  # mirror path -> short name used in the book
    "dip/denoising/f16_gt.png": "dip/f16",
    "dip/denoising/snail.jpg": "dip/snail",
    "dip/sr/zebra_gt.png": "dip/zebra",
    "dip/sr/zebra_crop.png": "dip/zebra_crop",
    "dip/restoration/barbara.png": "dip/barbara",
    "dip/restoration/kate.png": "dip/restoration_kate",
}


def short_name(path: str) -> str:
    if path in SHORT:
        return SHORT[path]
    stem = path.rsplit(".", 1)[0]
    if stem.startswith("dip/inpainting/"):
        return "dip/" + stem.split("/")[-1]
    if stem.startswith("dip/project_page/denoising/color/25/"):
        img = stem.split("/")[-1].replace("_deep_prior", "")
        return "dip_results/denoise25/" + img
    if stem.startswith("dip/project_page/sr/"):
        _, _, _, dataset, factor, img = stem.split("/")
        return f"dip_results/sr_{factor}/{dataset}/" + img.replace("_deep_prior", "")
    return stem


def main(sources: str) -> None:
    row = re.compile(r"^\| `([^`]+)` \| (\S+) \| `([^`]+)` \| `[0-9a-f]+` \| `([0-9a-f]{64})` \|")
    out = csv.writer(sys.stdout, lineterminator="\n")
    out.writerow(["name", "path", "url", "sha256"])
    for line in open(sources, encoding="utf-8"):
        m = row.match(line)
        if not m:
            continue
        path, repo, repo_path, sha = m.groups()
        url = f"https://raw.githubusercontent.com/{repo}/{COMMITS[repo]}/{repo_path}"
        out.writerow([short_name(path), path, url, sha])


if __name__ == "__main__":
    main(sys.argv[1])

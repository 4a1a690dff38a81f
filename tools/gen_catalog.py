#!/usr/bin/env python3
"""Generate spotplan's embedded EC2 instance catalog from the data shipped in the PyPI package moto.

    python3 tools/gen_catalog.py [--moto-dir DIR] [--out crates/spotplan-core/catalog/ec2-catalog.json]

Without --moto-dir it reads the `moto` package importable by this interpreter (pin: see
scripts/versions.env). Inputs, all under the moto package:
  ec2/resources/instance_types.json.gz                      DescribeInstanceTypes, merged over regions
  ec2/resources/instance_type_offerings/region/*.json.gz    DescribeInstanceTypeOfferings (region)
  ec2/resources/instance_type_offerings/availability-zone/*.json.gz   (per AZ)
  emr/resources/instance-types-<release>.json.gz            ListSupportedInstanceTypes per EMR release

Correction: `current_generation` is not moto's `CurrentGeneration`. moto merges
DescribeInstanceTypes over every region its account could query, and the merge marks m5, m6i,
r5, r6i, c5, c6gn, g5, r7g and r7gd (current families with deep spot pools) as previous
generation. The catalog uses AWS's published list instead (PREVIOUS_GENERATION_FAMILIES below):
a type is previous generation exactly when its family is on that list. Live data (`--aws`)
replaces it with the region's own DescribeInstanceTypes answer.

The output is deterministic (sorted keys and lists, no timestamps): the same moto version gives
the same bytes, which CI checks. One instance type per line keeps diffs between moto versions
readable. Schema (version 1):
  {"schema":1, "source":"moto <version>",
   "regions": {region: [az, ...]},                 AZ names, sorted
   "types": [ {"name", "vcpus", "cores", "memory_mib", "arch", "processor", "current_generation",
               "bare_metal", "burstable", "spot", "storage": null | {"kind": "ssd"|"hdd",
               "nvme": bool, "total_gb": int, "disks": int},
               "accelerators": [{"kind": "gpu"|"neuron"|"inference"|"fpga"|"media", "count",
               "manufacturer", "name", "memory_mib"}],
               "offered": {region: "<AZ suffix letters>"}} ],
   "emr": {"sets": [[type, ...]], "releases": {release: index into sets}}}
"""
import argparse
import glob
import gzip
import importlib.util
import json
import os
import sys

SCHEMA = 1

# Families AWS lists as previous generation: the "Previous generation instance types" page of the
# Amazon EC2 instance types guide and the upgrade table at aws.amazon.com/ec2/previous-generation
# (M1-M4, T1, A1, C1, C3, C4, R3, R4, I2, D2, G2, G3, P2, and the retired cluster and high-I/O
# families CC1, CC2, CG1, CR1, HI1, HS1). Every other family is current generation.
PREVIOUS_GENERATION_FAMILIES = frozenset({
    "a1", "c1", "c3", "c4", "cc1", "cc2", "cg1", "cr1", "d2", "g2", "g3", "hi1", "hs1", "i2",
    "m1", "m2", "m3", "m4", "p2", "r3", "r4", "t1",
})


def load_gz(path):
    with gzip.open(path, "rt", encoding="utf-8") as f:
        return json.load(f)


def moto_root(arg):
    if arg:
        return arg
    spec = importlib.util.find_spec("moto")
    if spec is None or not spec.submodule_search_locations:
        sys.exit("error: the Python package 'moto' is not installed; pip install moto==<version> "
                 "(see scripts/versions.env) or pass --moto-dir")
    return list(spec.submodule_search_locations)[0]


def moto_version(root):
    # The version of the package at `root` itself (another moto may be importable elsewhere).
    with open(os.path.join(root, "__init__.py"), encoding="utf-8") as f:
        for line in f:
            if line.startswith("__version__"):
                return line.split("=")[1].strip().strip("\"'")
    sys.exit(f"error: cannot tell the moto version of {root}")


def arch_of(info):
    archs = info["ProcessorInfo"]["SupportedArchitectures"]
    for a in ("x86_64", "arm64", "arm64_mac", "x86_64_mac"):
        if a in archs:
            return a
    sys.exit(f"error: {info['InstanceType']}: unknown architectures {archs}")


def storage_of(info):
    s = info.get("InstanceStorageInfo")
    if not s:
        return None
    kinds = sorted({d["Type"] for d in s.get("Disks", [])})
    if len(kinds) != 1:
        sys.exit(f"error: {info['InstanceType']}: mixed disk types {kinds}")
    return {
        "kind": kinds[0],
        "nvme": s.get("NvmeSupport") in ("required", "supported"),
        "total_gb": int(s["TotalSizeInGB"]),
        "disks": sum(int(d["Count"]) for d in s["Disks"]),
    }


ACCEL_SOURCES = [
    ("gpu", "GpuInfo", "Gpus"),
    ("neuron", "NeuronInfo", "NeuronDevices"),
    ("inference", "InferenceAcceleratorInfo", "Accelerators"),
    ("fpga", "FpgaInfo", "Fpgas"),
    ("media", "MediaAcceleratorInfo", "Accelerators"),
]


def accelerators_of(info):
    out = []
    for kind, key, items in ACCEL_SOURCES:
        for a in (info.get(key) or {}).get(items, []):
            out.append({
                "kind": kind,
                "count": int(a["Count"]),
                "manufacturer": a.get("Manufacturer", "AWS"),
                "name": a["Name"],
                "memory_mib": int((a.get("MemoryInfo") or {}).get("SizeInMiB", 0)),
            })
    # inf1 appears both as Neuron and as an inference accelerator: keep one entry per device name.
    seen, uniq = set(), []
    for a in out:
        if a["name"] in seen:
            continue
        seen.add(a["name"])
        uniq.append(a)
    return uniq


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--moto-dir", help="path of the moto package directory")
    ap.add_argument("--out", default=os.path.join(os.path.dirname(__file__), "..", "crates", "spotplan-core", "catalog", "ec2-catalog.json"))
    args = ap.parse_args()
    root = moto_root(args.moto_dir)
    ec2 = os.path.join(root, "ec2", "resources")
    emr = os.path.join(root, "emr", "resources")

    specs = load_gz(os.path.join(ec2, "instance_types.json.gz"))
    offered = {}  # type -> region -> set of AZ suffixes
    regions = {}
    for path in sorted(glob.glob(os.path.join(ec2, "instance_type_offerings", "region", "*.json.gz"))):
        region = os.path.basename(path)[: -len(".json.gz")]
        regions.setdefault(region, set())
        for o in load_gz(path):
            offered.setdefault(o["InstanceType"], {}).setdefault(region, set())
    for path in sorted(glob.glob(os.path.join(ec2, "instance_type_offerings", "availability-zone", "*.json.gz"))):
        region = os.path.basename(path)[: -len(".json.gz")]
        for o in load_gz(path):
            az = o["Location"]
            if not (az.startswith(region) and len(az) == len(region) + 1 and az[-1].isalpha()):
                sys.exit(f"error: {path}: AZ {az} is not <region><letter>")
            regions.setdefault(region, set()).add(az)
            offered.setdefault(o["InstanceType"], {}).setdefault(region, set()).add(az[-1])

    types = []
    for name in sorted(specs):
        info = specs[name]
        types.append({
            "name": name,
            "vcpus": int(info["VCpuInfo"]["DefaultVCpus"]),
            "cores": int(info["VCpuInfo"].get("DefaultCores", info["VCpuInfo"]["DefaultVCpus"])),
            "memory_mib": int(info["MemoryInfo"]["SizeInMiB"]),
            "arch": arch_of(info),
            "processor": info["ProcessorInfo"].get("Manufacturer", ""),
            "current_generation": name.split(".")[0] not in PREVIOUS_GENERATION_FAMILIES,
            "bare_metal": bool(info.get("BareMetal", False)),
            "burstable": bool(info.get("BurstablePerformanceSupported", False)),
            "spot": "spot" in info.get("SupportedUsageClasses", []),
            "storage": storage_of(info),
            "accelerators": accelerators_of(info),
            "offered": {r: "".join(sorted(azs)) for r, azs in sorted(offered.get(name, {}).items())},
        })

    sets, releases = [], {}
    index = {}
    for path in sorted(glob.glob(os.path.join(emr, "instance-types-*.json.gz"))):
        release = os.path.basename(path)[len("instance-types-"): -len(".json.gz")]
        members = tuple(sorted(set(load_gz(path))))
        if members not in index:
            index[members] = len(sets)
            sets.append(list(members))
        releases[release] = index[members]

    doc_head = {"schema": SCHEMA, "source": f"moto {moto_version(root)}",
                "regions": {r: sorted(a) for r, a in sorted(regions.items())}}
    lines = ['{"schema":%d,"source":%s,' % (SCHEMA, json.dumps(doc_head["source"])),
             '"regions":' + json.dumps(doc_head["regions"], separators=(",", ":"), sort_keys=True) + ",",
             '"types":[']
    for i, t in enumerate(types):
        lines.append(json.dumps(t, separators=(",", ":"), sort_keys=True) + ("," if i + 1 < len(types) else ""))
    lines.append('],"emr":{"sets":[')
    for i, s in enumerate(sets):
        lines.append(json.dumps(s, separators=(",", ":")) + ("," if i + 1 < len(sets) else ""))
    lines.append('],"releases":' + json.dumps(releases, separators=(",", ":"), sort_keys=True) + "}}")
    text = "\n".join(lines) + "\n"
    json.loads(text)  # the output must stay valid JSON
    os.makedirs(os.path.dirname(os.path.abspath(args.out)), exist_ok=True)
    with open(args.out, "w", encoding="utf-8", newline="\n") as f:
        f.write(text)
    print(f"wrote {args.out}: {len(types)} types, {len(regions)} regions, "
          f"{len(releases)} EMR releases in {len(sets)} distinct sets, {len(text)} bytes", file=sys.stderr)


if __name__ == "__main__":
    main()

"""augment() per view, old (main@887450d data/augment.py: torchvision ops, then the plain resize/crop) vs new (one warp + LUT).

    PYTHONPATH=. .venv/bin/python benchmarks/augment_micro.py [N images]   (the old module comes from git: 887450d)
"""
import glob, importlib.util, os, subprocess, tempfile, time, sys
import numpy as np, torch
from PIL import Image
from headstart.backbones.types import Preprocessing
from headstart.extract.preprocess import view_base, to_uint8_tensor, plain_frame, crop_tensor
import headstart.data.augment as new
_old_src = subprocess.run(["git", "show", "887450d:headstart/data/augment.py"], check=True, capture_output=True,
                          text=True, cwd=os.path.dirname(os.path.abspath(__file__))).stdout
_old_file = os.path.join(tempfile.mkdtemp(), "old_augment.py")
open(_old_file, "w").write(_old_src)
spec = importlib.util.spec_from_file_location("old_augment", _old_file)
old = importlib.util.module_from_spec(spec); sys.modules["old_augment"] = old; spec.loader.exec_module(old)
torch.set_num_threads(1)
N = int(sys.argv[1]) if len(sys.argv) > 1 else 100
fs = sorted(glob.glob(os.environ.get('HEADSTART_DATA', '../shared/data') + '/kaggle_cxr_224/train/*/*'))[:N]
prep = Preprocessing()
bases = []
for f in fs:
    im = Image.open(f); im.load(); bases.append(view_base(im, prep))
K, M = 4, 2
def old_views(): return [[to_uint8_tensor(v, prep) for v in old.views(b, str(i), K, 0, "light")] for i, b in enumerate(bases)]
def new_views(): return [[crop_tensor(v, prep) for v in new.views(b, str(i), K, 0, "light", **plain_frame(b, prep))] for i, b in enumerate(bases)]
def old_tta(): return [[to_uint8_tensor(v, prep) for v in old.tta_views(b, M)] for b in bases]
def new_tta(): return [[crop_tensor(v, prep) for v in new.tta_views(b, M, **plain_frame(b, prep))] for b in bases]
def bench(fn, n, reps=5):
    fn(); cs = []
    for _ in range(reps):
        c = time.process_time(); fn(); cs.append(time.process_time() - c)
    return 1000 * np.median(cs) / n, 1000 * min(cs) / n
res = {}
for name, fn, n in [("views old", old_views, N*K), ("views new", new_views, N*K), ("tta old", old_tta, N*M), ("tta new", new_tta, N*M)]:
    res[name] = bench(fn, n)
    print(f"{name:10s} {res[name][0]:.3f} ms CPU per view (median of 5; min {res[name][1]:.3f}), incl. the crop to a uint8 tensor", flush=True)
print(f"views: new/old {res['views new'][0]/res['views old'][0]:.2f}; tta: new/old {res['tta new'][0]/res['tta old'][0]:.2f}")
a, b = old_views(), new_views()
d = np.concatenate([(x.numpy().astype(int) - y.numpy().astype(int)).ravel() for xs, ys in zip(a, b) for x, y in zip(xs, ys)])
print(f"views old vs new pixels: mean |diff| {np.abs(d).mean():.2f}, median {np.median(np.abs(d)):.0f}, 99th pct {np.percentile(np.abs(d), 99):.0f} grey levels")
a, b = old_tta(), new_tta()
d = np.concatenate([(x.numpy().astype(int) - y.numpy().astype(int)).ravel() for xs, ys in zip(a, b) for x, y in zip(xs, ys)])
print(f"tta old vs new pixels: mean |diff| {np.abs(d).mean():.2f}, median {np.median(np.abs(d)):.0f}, 99th pct {np.percentile(np.abs(d), 99):.0f} grey levels")

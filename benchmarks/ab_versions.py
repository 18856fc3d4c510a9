"""Time two checkouts of lang-sam on the same weights, one process each, to tell a regression from
noise: ``python benchmarks/ab_versions.py <checkout> <weights dir>`` (the dir from bench.py, holding
sam_vit_b_01ec64.pth and groundingdino_swint_ogc.pth). Prints the first predict and three more
prompts on assets/coffee.jpg."""
import sys, time, torch
sys.path.insert(0, sys.argv[1])
import lang_sam
from lang_sam import LangSAM
from lang_sam.utils import load_image
w = sys.argv[2]
torch.set_num_threads(2)
m = LangSAM("vit_b", f"{w}/sam_vit_b_01ec64.pth", gdino_type="swint", gdino_ckpt_path=f"{w}/groundingdino_swint_ogc.pth", device="cpu")
img = load_image("assets/coffee.jpg")
t = time.perf_counter(); r = m.predict(img, "cup"); t1 = time.perf_counter() - t
times = []
for p in ["spoon", "table", "cup"]:
    t = time.perf_counter(); r = m.predict(img, p); times.append(time.perf_counter() - t)
print(sys.argv[1], lang_sam.__file__, f"first {t1:.1f}s, then", [f"{x:.1f}" for x in times], len(r.phrases))

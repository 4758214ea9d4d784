"""``python -m segapp.bench``: segapp against the usual recipes, in one process, same weights and inputs.

    python -m segapp.bench [--device auto|cpu|cuda] [--weights SOURCE] [--json FILE] [--quick]
                           [--skip web,training,startup] [--compile reduce-overhead] [--runtime onnx]

Measures (warm-up, repeats, medians):

1. single-slice latency of ``Segmenter.predict`` vs (a) the transformers documentation recipe
   (``SegformerImageProcessor`` defaults, i.e. 512 x 512, + model + ``post_process_semantic_segmentation``)
   and (b) the notebook's path (PIL resize to 288, numpy normalisation, fp32 eager model, upsample and
   argmax on the CPU), with the share of pixels on which our masks agree with (b);
2. ``predict_batch`` throughput at several batch sizes; 16 threads calling ``predict`` at once,
   combined into shared forward passes vs one by one; with ``--compile MODE``, a compiled
   Segmenter against the eager one (latency, batch throughput, agreement, concurrent callers
   reaching it from many threads); with ``--runtime onnx``,
   the ONNX Runtime path against PyTorch on the CPU (export and cached start-up, latency, batch
   throughput, agreement);
3. the web path: one ``/segment`` request vs ``predict`` alone, both through Gradio's plain HTTP
   API (what curl or any language uses; :mod:`segapp.rest_client`) and through ``gradio_client`` (whose
   event polling adds a floor of its own), each next to a no-op endpoint's floor; throughput with
   8 concurrent clients of each kind; and, where Playwright and Chromium are installed, the page
   itself: a click on Submit until the overlay has decoded (:mod:`segapp.bench.browser`);
4. training images/s vs a plain per-sample DataLoader (:mod:`segapp.bench.training`);
5. start-up: seconds from launching ``python app.py`` to the first served prediction.

Inputs are phantom slices of the real sizes. CPU timings are only meaningful as ratios within
one run; GPU timings are absolute for the named card.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import warnings
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image

from segapp.bench.browser import bench_page, page_available
from segapp.cli import add_compile_option, add_device_option, add_runtime_option, add_weights_option
from segapp.inference.segmenter import Segmenter, pick_device
from segapp.model.onnx_runtime import ONNX_MISSING, onnx_available
from segapp.synthetic import generate_slice

# The start-up part times the repository's ``python app.py``; an installed wheel has no app.py
# (the weights and examples are package data, but the Spaces entry point is not), so it is skipped.
APP = Path(__file__).resolve().parents[2] / "app.py"
SIZES = [(266, 266), (360, 310), (234, 234), (276, 276)]  # (width, height), as segapp.phantom takes them


def _slices(count: int) -> list[np.ndarray]:
    """Phantom slices with organs, cycling through the real sizes."""
    return [generate_slice(100 + i, size=SIZES[i % len(SIZES)], empty=False).image8 for i in range(count)]


# ----------------------------------------------------------------------------- 1. latency


def recipe_transformers(model: torch.nn.Module, device: torch.device) -> Callable[[np.ndarray], np.ndarray]:
    """(a) The transformers documentation recipe with its defaults (512 x 512)."""
    from transformers import SegformerImageProcessor

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        processor = SegformerImageProcessor()

    @torch.inference_mode()
    def run(gray: np.ndarray) -> np.ndarray:
        inputs = processor(images=np.stack([gray] * 3, -1), return_tensors="pt").to(device)
        outputs = model(**inputs)
        mask = processor.post_process_semantic_segmentation(outputs, target_sizes=[gray.shape])[0]
        return mask.cpu().numpy().astype(np.uint8)

    return run


def recipe_notebook(model: torch.nn.Module, device: torch.device, size: int = 288) -> Callable[[np.ndarray], np.ndarray]:
    """(b) The notebook's path: PIL resize, numpy normalisation, fp32 eager, CPU upsample + argmax."""
    mean = np.array([0.485, 0.456, 0.406], np.float32)[:, None, None]
    std = np.array([0.229, 0.224, 0.225], np.float32)[:, None, None]

    @torch.inference_mode()
    def run(gray: np.ndarray) -> np.ndarray:
        resized = np.asarray(Image.fromarray(gray).convert("RGB").resize((size, size), Image.BILINEAR), np.float32)
        x = (resized.transpose(2, 0, 1) / 255.0 - mean) / std
        logits = model(pixel_values=torch.from_numpy(x)[None].to(device)).logits.float().cpu()
        up = F.interpolate(logits, size=gray.shape, mode="bilinear", align_corners=False)
        return up.argmax(1)[0].numpy().astype(np.uint8)

    return run


def _interleaved_ms(runs: dict[str, Callable[[], Any]], repeats: int, sync: Callable[[], None]) -> dict[str, float]:
    """Median ms of each callable, timed round-robin so that load on a shared machine hits all alike."""
    for run in runs.values():
        run()  # warm-up
    times: dict[str, list[float]] = {name: [] for name in runs}
    for _ in range(repeats):
        for name, run in runs.items():
            sync()
            start = time.perf_counter()
            run()
            sync()
            times[name].append((time.perf_counter() - start) * 1000)
    return {name: statistics.median(values) for name, values in times.items()}


def bench_latency(segmenter: Segmenter, slices: list[np.ndarray], repeats: int) -> dict[str, Any]:
    model, device = segmenter.model, segmenter.device
    sync = (lambda: torch.cuda.synchronize(device)) if device.type == "cuda" else (lambda: None)
    paths = {"segapp": lambda g: segmenter.predict(g).mask,
             "transformers_recipe": recipe_transformers(model, device),
             "notebook": recipe_notebook(model, device)}
    per_slice: dict[str, list[float]] = {name: [] for name in paths}
    for gray in slices:
        timed = _interleaved_ms({name: (lambda run=run, gray=gray: run(gray)) for name, run in paths.items()}, repeats, sync)
        for name, value in timed.items():
            per_slice[name].append(value)
    agree = [float(np.mean(segmenter.predict(g).mask == paths["notebook"](g))) for g in slices]
    result = {f"{name}_ms": statistics.median(times) for name, times in per_slice.items()}
    result["speedup_vs_transformers_recipe"] = result["transformers_recipe_ms"] / result["segapp_ms"]
    result["speedup_vs_notebook"] = result["notebook_ms"] / result["segapp_ms"]
    result["pixel_agreement_vs_notebook"] = float(np.mean(agree))
    result["pixel_agreement_vs_notebook_min"] = float(np.min(agree))
    return result


# ----------------------------------------------------------------------------- 2. throughput


def bench_batches(segmenter: Segmenter, slices: list[np.ndarray], sizes: list[int], seconds: float) -> dict[str, float]:
    result = {}
    for batch in sizes:
        segmenter.max_batch_size = batch
        group = [slices[i % len(slices)] for i in range(batch)]
        segmenter.predict_batch(group)  # warm-up for this shape
        start, done = time.perf_counter(), 0
        while time.perf_counter() - start < seconds or done == 0:
            segmenter.predict_batch(group)
            done += batch
        result[f"batch_{batch}_slices_per_s"] = done / (time.perf_counter() - start)
    segmenter.max_batch_size = max(sizes)
    return result


def bench_concurrency(segmenter: Segmenter, slices: list[np.ndarray], clients: int, per_client: int) -> dict[str, Any]:
    """``clients`` threads calling ``predict`` at once: combined (the service's default) vs one
    by one (``combine_requests`` off), same Segmenter; plus a lone call's latency in both modes.

    The Segmenter's batch limit is set to ``clients`` meanwhile (for a compiled one, pass its
    ``max_batch_size``, so no new shapes are compiled).
    """
    saved = segmenter.max_batch_size, segmenter.combine_requests
    segmenter.max_batch_size = clients
    result: dict[str, Any] = {"clients": clients}

    def lone(combine: bool) -> None:
        segmenter.combine_requests = combine
        segmenter.predict(slices[0])

    try:
        for name, combine in (("one_by_one", False), ("combined", True)):
            segmenter.combine_requests = combine
            segmenter.predict(slices[0])  # warm-up

            def worker(index: int) -> int:
                for r in range(per_client):
                    segmenter.predict(slices[(index + r) % len(slices)])
                return per_client

            start = time.perf_counter()
            with ThreadPoolExecutor(clients) as pool:
                total = sum(pool.map(worker, range(clients)))
            result[f"{name}_slices_per_s"] = total / (time.perf_counter() - start)
        sync = (lambda: torch.cuda.synchronize(segmenter.device)) if segmenter.device.type == "cuda" else (lambda: None)
        result["lone_request_ms"] = _interleaved_ms(
            {"one_by_one": lambda: lone(False), "combined": lambda: lone(True)}, 11, sync
        )
    finally:
        segmenter.max_batch_size, segmenter.combine_requests = saved
    result["speedup"] = result["combined_slices_per_s"] / result["one_by_one_slices_per_s"]
    return result


def _against(candidate: Segmenter, reference: Segmenter, slices: list[np.ndarray], names: tuple[str, str],
             batch: int, repeats: int, *, quick: bool) -> dict[str, Any]:
    """Two Segmenters on the same slices: single-slice latency (round-robin), throughput at
    ``batch``, and the share of pixels on which their masks agree.

    Returns:
        ``{A}_ms``, ``{B}_ms``, ``{A}_batch_slices_per_s``, ``{B}_batch_slices_per_s``, ``batch``,
        ``pixel_agreement`` (mean over slices) and ``worst_slice_agreement``, where ``names``
        is ``(A, B)`` for (candidate, reference).
    """
    a, b = names
    device = reference.device
    sync = (lambda: torch.cuda.synchronize(device)) if device.type == "cuda" else (lambda: None)
    saved = reference.max_batch_size
    reference.max_batch_size = batch
    try:
        ms = _interleaved_ms({a: lambda: candidate.predict(slices[0]), b: lambda: reference.predict(slices[0])},
                             repeats, sync)
        seconds = 0.5 if quick else 3.0
        rates = {name: bench_batches(target, slices, [batch], seconds)[f"batch_{batch}_slices_per_s"]
                 for name, target in ((a, candidate), (b, reference))}
    finally:
        reference.max_batch_size = saved
    agree = [float(np.mean(candidate.predict(g).mask == reference.predict(g).mask)) for g in slices]
    return {f"{a}_ms": ms[a], f"{b}_ms": ms[b], "batch": batch,
            f"{a}_batch_slices_per_s": rates[a], f"{b}_batch_slices_per_s": rates[b],
            "pixel_agreement": float(np.mean(agree)), "worst_slice_agreement": float(np.min(agree))}


def bench_compiled(segmenter: Segmenter, slices: list[np.ndarray], mode: str, repeats: int, *, quick: bool) -> dict[str, Any]:
    """A ``torch.compile``'d Segmenter (same loaded model) against the eager one."""
    batch = 4 if quick else 16
    start = time.perf_counter()
    compiled = Segmenter(segmenter.loaded, device=segmenter.device, max_batch_size=batch, compile=mode)
    compile_seconds = time.perf_counter() - start
    result = _against(compiled, segmenter, slices, ("compiled", "eager"), batch, repeats, quick=quick)
    # The app's case: request threads of a server reaching the compiled model (on its own thread).
    concurrency = bench_concurrency(compiled, slices, clients=batch, per_client=2 if quick else 16)
    return {"mode": mode, "compile_seconds": compile_seconds, **result, "concurrency": concurrency}


def bench_onnx(segmenter: Segmenter, slices: list[np.ndarray], repeats: int, *, quick: bool) -> dict[str, Any]:
    """The ONNX Runtime path (:mod:`segapp.model.onnx_runtime`) against PyTorch, same loaded model, on the CPU.

    The first Segmenter exports into a fresh cache folder (what a first start costs); the second
    finds the export there (what every later start costs).
    """
    batch = 4 if quick else 16
    with tempfile.TemporaryDirectory(prefix="segapp-bench-onnx-") as cache:
        saved = os.environ.get("SEGAPP_CACHE_DIR")
        os.environ["SEGAPP_CACHE_DIR"] = cache
        try:
            start = time.perf_counter()
            Segmenter(segmenter.loaded, device="cpu", max_batch_size=batch, runtime="onnx")
            first_seconds = time.perf_counter() - start
            start = time.perf_counter()
            onnx = Segmenter(segmenter.loaded, device="cpu", max_batch_size=batch, runtime="onnx")
            cached_seconds = time.perf_counter() - start
        finally:
            if saved is None:
                os.environ.pop("SEGAPP_CACHE_DIR", None)
            else:
                os.environ["SEGAPP_CACHE_DIR"] = saved
    result = _against(onnx, segmenter, slices, ("onnx", "torch"), batch, repeats, quick=quick)
    return {"first_start_seconds": first_seconds, "cached_start_seconds": cached_seconds,
            "speedup": result["torch_ms"] / result["onnx_ms"], **result}


# ----------------------------------------------------------------------------- 3. web path


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def bench_web(segmenter: Segmenter, slices: list[np.ndarray], repeats: int, concurrent: int = 8) -> dict[str, Any]:
    import httpx
    from gradio_client import Client, handle_file

    from segapp import rest_client
    from segapp.ui import build_demo, launch_options

    folder = Path(tempfile.mkdtemp(prefix="segapp-bench-web-"))
    files = []
    for index, gray in enumerate(slices[: 2 if repeats <= 3 else 4]):
        path = folder / f"case1_day1_slice_{index:04d}_{gray.shape[1]}_{gray.shape[0]}_1.50_1.50.png"
        Image.fromarray(gray).save(path)
        files.append(path)
    demo = build_demo(segmenter, examples_dir=None)
    _, url, _ = demo.launch(**launch_options(port=_free_port()), prevent_thread_lock=True, quiet=True)
    floor_demo, floor_url = _echo_app()
    closing = contextlib.ExitStack()  # the HTTP clients
    try:
        client, floor = Client(url, verbose=False), Client(floor_url, verbose=False)
        http = closing.enter_context(httpx.Client(base_url=url, timeout=60))
        floor_http = closing.enter_context(httpx.Client(base_url=floor_url, timeout=60))
        timings: dict[str, list[float]] = {}
        for p in files:
            timed = _interleaved_ms({
                "client": lambda p=p: client.predict(handle_file(str(p)), api_name="/segment"),
                "http": lambda p=p: rest_client.segment(http, p),
                "predict": lambda p=p: segmenter.predict(p),
                # What any Gradio endpoint costs: upload, queue, a file back.
                "client_echo": lambda p=p: floor.predict(handle_file(str(p)), api_name="/echo"),
                "http_echo": lambda p=p: rest_client.download(floor_http, rest_client.call_with_file(floor_http, "echo", p)[0]),
            }, repeats, lambda: None)
            for name, ms in timed.items():
                timings.setdefault(name, []).append(ms)
        ms = {name: statistics.median(values) for name, values in timings.items()}
        per_client = repeats

        def throughput(call: Callable[[int, Path], Any]) -> float:
            def worker(index: int) -> int:
                for r in range(per_client):
                    call(index, files[(index + r) % len(files)])
                return per_client

            start = time.perf_counter()
            with ThreadPoolExecutor(concurrent) as pool:
                total = sum(pool.map(worker, range(concurrent)))
            return total / (time.perf_counter() - start)

        page_skipped = page_available()
        page = None if page_skipped else bench_page(url, files, repeats, baseline=segmenter.predict)
        clients = [Client(url, verbose=False) for _ in range(concurrent)]
        https = [closing.enter_context(httpx.Client(base_url=url, timeout=120)) for _ in range(concurrent)]
        client_rate = throughput(lambda i, p: clients[i].predict(handle_file(str(p)), api_name="/segment"))
        http_rate = throughput(lambda i, p: rest_client.segment(https[i], p))
    finally:
        closing.close()
        floor_demo.close()
        demo.close()
    predict_ms = ms["predict"]
    return {"predict_ms": predict_ms,
            "http_request_ms": ms["http"], "http_overhead": ms["http"] / predict_ms - 1,
            "http_echo_ms": ms["http_echo"],
            "web_request_ms": ms["client"], "web_overhead": ms["client"] / predict_ms - 1,
            "gradio_echo_ms": ms["client_echo"],
            "overhead_beyond_echo": (ms["client"] - ms["client_echo"]) / predict_ms - 1,
            f"http_{concurrent}_clients_requests_per_s": http_rate,
            f"web_{concurrent}_clients_requests_per_s": client_rate,
            # The page in Chromium: Submit to the overlay decoded, vs predict just before each click.
            "page": None if page is None else {**page, "overhead": page["page_submit_ms"] / page["baseline_ms"] - 1},
            "page_skipped": page_skipped}


def _echo_app() -> tuple[Any, str]:
    """A Gradio app whose endpoint takes a file and returns it: the framework's own floor."""
    import gradio as gr

    with gr.Blocks() as demo:
        source, target = gr.File(), gr.File()
        gr.Button().click(lambda path: path, inputs=source, outputs=target, api_name="echo")
    demo.queue()
    _, url, _ = demo.launch(server_port=_free_port(), prevent_thread_lock=True, quiet=True)
    return demo, url


# ----------------------------------------------------------------------------- 5. start-up


def bench_startup(weights: str, device: str, timeout: float = 120) -> dict[str, float]:
    from gradio_client import Client, handle_file

    port = _free_port()
    folder = Path(tempfile.mkdtemp(prefix="segapp-bench-start-"))
    path = folder / "slice_0001_266_266_1.50_1.50.png"
    Image.fromarray(_slices(1)[0]).save(path)
    env = {**os.environ, "GRADIO_ANALYTICS_ENABLED": "False"}
    start = time.perf_counter()
    process = subprocess.Popen(
        [sys.executable, str(APP), "--weights", weights, "--device", device, "--port", str(port)],
        stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, env=env,
    )
    try:
        while True:
            if time.perf_counter() - start > timeout:
                raise TimeoutError(f"app did not serve within {timeout} s")
            if process.poll() is not None:
                raise RuntimeError(f"app exited: {process.stderr.read().decode()[-2000:]}")
            try:
                Client(f"http://127.0.0.1:{port}/", verbose=False).predict(handle_file(str(path)), api_name="/segment")
                break
            except Exception:  # noqa: BLE001 - not up yet
                time.sleep(0.25)
        return {"startup_to_first_prediction_s": time.perf_counter() - start}
    finally:
        process.terminate()
        process.wait(timeout=30)


# ----------------------------------------------------------------------------- 4. training


def bench_train(device: str, quick: bool) -> dict[str, Any]:
    from segapp.bench.training import bench_training
    from segapp.synthetic import generate_dataset

    with tempfile.TemporaryDirectory(prefix="segapp-bench-data-") as tmp:
        generate_dataset(Path(tmp), train=48 if quick else 240, valid=4, seed=9, progress=False)
        on_gpu = pick_device(device).type == "cuda"
        steps = (30 if quick else 300) if on_gpu else (12 if quick else 30)
        return bench_training(tmp, device=device, steps=steps, plain_steps=steps // 3 if on_gpu else 3)


# ----------------------------------------------------------------------------- command line


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m segapp.bench", description=__doc__.splitlines()[0])
    add_device_option(parser)
    add_weights_option(parser)
    parser.add_argument("--json", help="write all figures to this file")
    parser.add_argument("--quick", action="store_true", help="few repeats (smoke run)")
    parser.add_argument("--skip", default="", help="comma-separated parts to skip: web,training,startup")
    add_compile_option(parser, help="also time a torch.compile'd Segmenter in this mode against the eager one")
    add_runtime_option(parser, help="onnx: also time the ONNX Runtime path against PyTorch (CPU; needs segapp[onnx])")
    args = parser.parse_args(argv)
    if args.runtime == "onnx" and not onnx_available():
        print(f"error: {ONNX_MISSING}", file=sys.stderr)  # before minutes of other parts
        return 2
    skip = {s.strip() for s in args.skip.split(",") if s.strip()}
    repeats = 3 if args.quick else 11
    segmenter = Segmenter.from_pretrained(args.weights, device=args.device, max_batch_size=64)
    device = segmenter.device
    results: dict[str, Any] = {
        "device": str(device),
        "device_name": torch.cuda.get_device_name(device) if device.type == "cuda" else f"cpu ({torch.get_num_threads()} threads)",
        "torch": torch.__version__, "weights": args.weights, "quick": args.quick,
    }
    slices = _slices(2 if args.quick else 8)
    print(f"segapp.bench on {results['device_name']} (weights {args.weights})", flush=True)

    results["latency"] = bench_latency(segmenter, slices, repeats)
    lat = results["latency"]
    print(f"1. single slice: segapp {lat['segapp_ms']:.1f} ms | transformers recipe {lat['transformers_recipe_ms']:.1f} ms "
          f"({lat['speedup_vs_transformers_recipe']:.2f}x) | notebook {lat['notebook_ms']:.1f} ms "
          f"({lat['speedup_vs_notebook']:.2f}x), agreement with notebook {100 * lat['pixel_agreement_vs_notebook']:.2f} %",
          flush=True)

    batch_sizes = ([1, 16, 64, 256] if device.type == "cuda" else [1, 4, 16]) if not args.quick else [1, 4]
    results["throughput"] = bench_batches(segmenter, slices, batch_sizes, 0.5 if args.quick else 3.0)
    print("2. batched: " + ", ".join(f"{k.split('_')[1]}: {v:.1f}/s" for k, v in results["throughput"].items()), flush=True)
    clients = 4 if args.quick else 16
    results["concurrency"] = bench_concurrency(segmenter, slices, clients, per_client=2 if args.quick else 16)
    con = results["concurrency"]
    print(f"2b. {clients} concurrent callers: combined {con['combined_slices_per_s']:.1f}/s vs one by one "
          f"{con['one_by_one_slices_per_s']:.1f}/s ({con['speedup']:.2f}x); a lone call "
          f"{con['lone_request_ms']['combined']:.1f} ms vs {con['lone_request_ms']['one_by_one']:.1f} ms", flush=True)
    if args.compile != "off":
        results["compiled"] = bench_compiled(segmenter, slices, args.compile, repeats, quick=args.quick)
        comp = results["compiled"]
        print(f"2c. compiled ({args.compile}, {comp['compile_seconds']:.0f} s to compile): single slice "
              f"{comp['compiled_ms']:.2f} ms vs eager {comp['eager_ms']:.2f} ms; batch {comp['batch']} "
              f"{comp['compiled_batch_slices_per_s']:.0f}/s vs {comp['eager_batch_slices_per_s']:.0f}/s; "
              f"agreement {100 * comp['pixel_agreement']:.3f} %; {comp['batch']} concurrent callers combined "
              f"{comp['concurrency']['combined_slices_per_s']:.0f}/s vs one by one "
              f"{comp['concurrency']['one_by_one_slices_per_s']:.0f}/s ({comp['concurrency']['speedup']:.2f}x)", flush=True)
    if args.runtime == "onnx":
        if device.type != "cpu":
            print("2d. ONNX Runtime: skipped, it runs on the CPU (use --device cpu)", flush=True)
        else:
            results["onnx"] = bench_onnx(segmenter, slices, repeats, quick=args.quick)
            ox = results["onnx"]
            print(f"2d. ONNX Runtime: single slice {ox['onnx_ms']:.1f} ms vs torch {ox['torch_ms']:.1f} ms "
                  f"({ox['speedup']:.2f}x); batch {ox['batch']} {ox['onnx_batch_slices_per_s']:.1f}/s vs "
                  f"{ox['torch_batch_slices_per_s']:.1f}/s; agreement {100 * ox['pixel_agreement']:.3f} %; "
                  f"first start {ox['first_start_seconds']:.1f} s (export), later {ox['cached_start_seconds']:.1f} s",
                  flush=True)

    if "web" not in skip:
        results["web"] = bench_web(segmenter, slices, repeats=2 if args.quick else 8)
        web = results["web"]
        print(f"3. web: predict alone {web['predict_ms']:.1f} ms | plain HTTP API {web['http_request_ms']:.1f} ms "
              f"(overhead {100 * web['http_overhead']:.0f} %; no-op endpoint {web['http_echo_ms']:.1f} ms) | "
              f"gradio_client {web['web_request_ms']:.1f} ms (overhead {100 * web['web_overhead']:.0f} %; no-op "
              f"endpoint {web['gradio_echo_ms']:.1f} ms) | 8 clients: {web['http_8_clients_requests_per_s']:.1f} req/s "
              f"over HTTP, {web['web_8_clients_requests_per_s']:.1f} through gradio_client", flush=True)
        if web["page"]:
            page = web["page"]
            print(f"3b. the page in Chromium: Submit to overlay shown {page['page_submit_ms']:.1f} ms vs predict "
                  f"{page['baseline_ms']:.1f} ms (overhead {100 * page['overhead']:.0f} %)", flush=True)
        else:
            print(f"3b. the page in Chromium: skipped, {web['page_skipped']}", flush=True)
    if "training" not in skip:
        results["training"] = bench_train(args.device, args.quick)
        tr = results["training"]
        print(f"4. training: segapp {tr['segapp_images_per_s']:.1f} images/s vs plain {tr['plain_images_per_s']:.1f} "
              f"({tr['ratio']:.2f}x)" + (f", peak {tr['peak_gpu_memory_mib']:.0f} MiB" if tr["peak_gpu_memory_mib"] else ""),
              flush=True)
    if "startup" not in skip and not APP.is_file():
        print(f"5. start-up: skipped, no {APP.name} here (it is in a source checkout, not in the package)", flush=True)
    elif "startup" not in skip:
        results["startup"] = bench_startup(args.weights, args.device)
        print(f"5. start-up to first served prediction: {results['startup']['startup_to_first_prediction_s']:.1f} s", flush=True)
    if args.json:
        Path(args.json).write_text(json.dumps(results, indent=2) + "\n", encoding="utf-8")
    print(json.dumps(results))
    return 0


if __name__ == "__main__":
    sys.exit(main())

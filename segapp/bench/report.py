"""One summary line per benchmark part, from its figures (the JSON carries them all)."""

from __future__ import annotations

from typing import Any


def header(results: dict[str, Any]) -> str:
    return f"segapp.bench on {results['device_name']} (weights {results['weights']})"


def latency(lat: dict[str, Any]) -> str:
    return (
        f"1. single slice: segapp {lat['segapp_ms']:.1f} ms | transformers recipe {lat['transformers_recipe_ms']:.1f} ms "
        f"({lat['speedup_vs_transformers_recipe']:.2f}x) | notebook {lat['notebook_ms']:.1f} ms "
        f"({lat['speedup_vs_notebook']:.2f}x), agreement with notebook {100 * lat['pixel_agreement_vs_notebook']:.2f} %"
    )


def throughput(rates: dict[str, float]) -> str:
    # Keys are batch_{size}_slices_per_s.
    return "2. batched: " + ", ".join(f"{k.split('_')[1]}: {v:.1f}/s" for k, v in rates.items())


def concurrency(con: dict[str, Any]) -> str:
    return (
        f"2b. {con['clients']} concurrent callers: combined {con['combined_slices_per_s']:.1f}/s vs one by one "
        f"{con['one_by_one_slices_per_s']:.1f}/s ({con['speedup']:.2f}x); a lone call "
        f"{con['lone_request_ms']['combined']:.1f} ms vs {con['lone_request_ms']['one_by_one']:.1f} ms"
    )


def compiled(comp: dict[str, Any]) -> str:
    return (
        f"2c. compiled ({comp['mode']}, {comp['compile_seconds']:.0f} s to compile): single slice "
        f"{comp['compiled_ms']:.2f} ms vs eager {comp['eager_ms']:.2f} ms; batch {comp['batch']} "
        f"{comp['compiled_batch_slices_per_s']:.0f}/s vs {comp['eager_batch_slices_per_s']:.0f}/s; "
        f"agreement {100 * comp['pixel_agreement']:.3f} %; {comp['batch']} concurrent callers combined "
        f"{comp['concurrency']['combined_slices_per_s']:.0f}/s vs one by one "
        f"{comp['concurrency']['one_by_one_slices_per_s']:.0f}/s ({comp['concurrency']['speedup']:.2f}x)"
    )


ONNX_SKIPPED = "2d. ONNX Runtime: skipped, it runs on the CPU (use --device cpu)"


def onnx(ox: dict[str, Any]) -> str:
    return (
        f"2d. ONNX Runtime: single slice {ox['onnx_ms']:.1f} ms vs torch {ox['torch_ms']:.1f} ms "
        f"({ox['speedup']:.2f}x); batch {ox['batch']} {ox['onnx_batch_slices_per_s']:.1f}/s vs "
        f"{ox['torch_batch_slices_per_s']:.1f}/s; agreement {100 * ox['pixel_agreement']:.3f} %; "
        f"first start {ox['first_start_seconds']:.1f} s (export), later {ox['cached_start_seconds']:.1f} s"
    )


def web(figures: dict[str, Any]) -> str:
    """Part 3 (the requests); the page's line is :func:`page`."""
    return (
        f"3. web: predict alone {figures['predict_ms']:.1f} ms | plain HTTP API {figures['http_request_ms']:.1f} ms "
        f"(overhead {100 * figures['http_overhead']:.0f} %; no-op endpoint {figures['http_echo_ms']:.1f} ms) | "
        f"gradio_client {figures['web_request_ms']:.1f} ms (overhead {100 * figures['web_overhead']:.0f} %; no-op "
        f"endpoint {figures['gradio_echo_ms']:.1f} ms) | 8 clients: {figures['http_8_clients_requests_per_s']:.1f} "
        f"req/s over HTTP, {figures['web_8_clients_requests_per_s']:.1f} through gradio_client"
    )


def page(figures: dict[str, Any]) -> str:
    """Part 3b, from the web part's figures: the page's timing, or why it was skipped."""
    if not figures["page"]:
        return f"3b. the page in Chromium: skipped, {figures['page_skipped']}"
    timed = figures["page"]
    line = (
        f"3b. the page in Chromium: Submit to overlay shown {timed['page_submit_ms']:.1f} ms vs predict "
        f"{timed['baseline_ms']:.1f} ms (overhead {100 * timed['overhead']:.0f} %)"
    )
    volume = figures.get("volume_page")
    if volume:
        line += (
            f"\n3c. the volume tab in Chromium: Segment volume to result {volume['volume_result_ms'] / 1000:.1f} s; "
            f"slice step (keyboard, {volume['steps']} steps) p50 {volume['step_ms_p50']:.0f} ms, "
            f"p95 {volume['step_ms_p95']:.0f} ms, max {volume['step_ms_max']:.0f} ms"
        )
    return line


def training(tr: dict[str, Any]) -> str:
    peak = f", peak {tr['peak_gpu_memory_mib']:.0f} MiB" if tr["peak_gpu_memory_mib"] else ""
    return (
        f"4. training: segapp {tr['segapp_images_per_s']:.1f} images/s vs plain {tr['plain_images_per_s']:.1f} "
        f"({tr['ratio']:.2f}x)" + peak
    )


def startup(figures: dict[str, float]) -> str:
    return f"5. start-up to first served prediction: {figures['startup_to_first_prediction_s']:.1f} s"


def volume(vol: dict[str, Any]) -> str:
    return (
        f"6. volume ({vol['slices']} slices of {vol['size'][0]} x {vol['size'][1]}, DICOM in): read {vol['read_ms']:.0f} ms, "
        f"segment {vol['model_ms']:.0f} ms, NIfTI {vol['nifti_ms']:.0f} ms, DICOM-SEG {vol['dicom_seg_ms']:.0f} ms, "
        f"RTSTRUCT {vol['rtstruct_ms']:.0f} ms; total {vol['total_ms'] / 1000:.2f} s, everything but the model "
        f"{100 * vol['non_model_share']:.0f} % of the model's time"
    )

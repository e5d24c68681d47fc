// Runs an ONNX model that fedge-export wrote in OpenCV's DNN module, a
// runtime independent of PyTorch, and compares its logits with fedge's own
// (LibTorch's) on the same examples.
//
//   onnx_opencv_check MODEL.onnx FEATURES.npy LOGITS.npy [NAME]
//
// FEATURES.npy: float32 [N, input_shape...]; LOGITS.npy: float32
// [N, num_classes] (fedge-export evaluate --features_out/--logits_out).
// Prints "model=NAME format=onnx max_abs_diff=D runtime=opencv-dnn
// examples=N" and exits 0, or prints the error and exits 1.
#include <algorithm>
#include <cmath>
#include <cstdint>
#include <cstdio>
#include <cstring>
#include <fstream>
#include <opencv2/core.hpp>
#include <opencv2/dnn.hpp>
#include <sstream>
#include <stdexcept>
#include <string>
#include <vector>

namespace {

constexpr int kBatch = 100;

struct Array {
  std::vector<int> shape;
  std::vector<float> values;
};

// A little-endian float32, C-order .npy file (format 1.0 or 2.0).
Array ReadNpy(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  std::stringstream bytes;
  bytes << in.rdbuf();
  const std::string data = bytes.str();
  if (!in || data.size() < 10 || data.compare(0, 6, "\x93NUMPY") != 0) {
    throw std::runtime_error(path + " is not a .npy file");
  }
  const bool v1 = data[6] == 1;
  const size_t header_len =
      v1 ? static_cast<uint8_t>(data[8]) | static_cast<uint8_t>(data[9]) << 8
         : static_cast<uint32_t>(static_cast<uint8_t>(data[8])) |
               static_cast<uint8_t>(data[9]) << 8 |
               static_cast<uint8_t>(data[10]) << 16 |
               static_cast<uint32_t>(static_cast<uint8_t>(data[11])) << 24;
  const size_t start = v1 ? 10 : 12;
  const std::string header = data.substr(start, header_len);
  if (header.find("'<f4'") == std::string::npos ||
      header.find("'fortran_order': False") == std::string::npos) {
    throw std::runtime_error(path + ": need float32 ('<f4'), C order");
  }
  Array a;
  const size_t open = header.find('(', header.find("'shape'"));
  std::stringstream dims(
      header.substr(open + 1, header.find(')', open) - open - 1));
  std::string dim;
  size_t n = 1;
  while (std::getline(dims, dim, ',')) {
    if (dim.find_first_not_of(' ') == std::string::npos) continue;
    a.shape.push_back(std::stoi(dim));
    n *= a.shape.back();
  }
  if (data.size() - start - header_len != n * sizeof(float)) {
    throw std::runtime_error(path + ": data size does not match its shape");
  }
  a.values.resize(n);
  std::memcpy(a.values.data(), data.data() + start + header_len,
              n * sizeof(float));
  return a;
}

// Largest |OpenCV - reference| over all logits.
double MaxAbsDiff(cv::dnn::Net& net, const Array& x, const Array& logits) {
  const int n = x.shape[0];
  const size_t example = x.values.size() / n;
  const size_t classes = logits.values.size() / n;
  double max_diff = 0;
  for (int begin = 0; begin < n; begin += kBatch) {
    std::vector<int> shape = x.shape;
    shape[0] = std::min(kBatch, n - begin);
    cv::Mat blob(static_cast<int>(shape.size()), shape.data(), CV_32F,
                 const_cast<float*>(x.values.data() + begin * example));
    net.setInput(blob);
    cv::Mat out = net.forward();
    if (out.total() != shape[0] * classes) {
      throw std::runtime_error("OpenCV returned " +
                               std::to_string(out.total()) + " values for " +
                               std::to_string(shape[0]) + " examples");
    }
    const float* got = out.ptr<float>();
    const float* want = logits.values.data() + begin * classes;
    for (size_t i = 0; i < shape[0] * classes; ++i) {
      max_diff = std::max(max_diff, std::abs(double{got[i]} - want[i]));
    }
  }
  return max_diff;
}

}  // namespace

int main(int argc, char** argv) {
  if (argc < 4 || argc > 5) {
    std::fprintf(stderr,
                 "usage: onnx_opencv_check MODEL.onnx FEATURES.npy "
                 "LOGITS.npy [NAME]\n");
    return 1;
  }
  try {
    const Array x = ReadNpy(argv[2]);
    const Array logits = ReadNpy(argv[3]);
    if (x.shape.empty() || logits.shape.size() != 2 ||
        logits.shape[0] != x.shape[0]) {
      throw std::runtime_error("features and logits disagree on examples");
    }
    cv::dnn::Net net = cv::dnn::readNetFromONNX(argv[1]);
    net.setPreferableBackend(cv::dnn::DNN_BACKEND_OPENCV);
    const double diff = MaxAbsDiff(net, x, logits);
    std::printf(
        "model=%s format=onnx max_abs_diff=%.3g runtime=opencv-dnn "
        "examples=%d\n",
        argc == 5 ? argv[4] : argv[1], diff, x.shape[0]);
  } catch (const std::exception& e) {
    std::fprintf(stderr, "onnx_opencv_check: %s\n", e.what());
    return 1;
  }
  return 0;
}

// SCAFFOLD (Karimireddy et al. 2020), both sides' shared pieces: the names
// of the control-variate tensors on the wire, and the agent-side algorithm
// (option II of the paper) used by fedge-agent and fedge-sim alike.
//
// Server control variate c and agent control variate c_i have the model's
// float32 tensors. With the task the agent receives the global model x
// followed by c (tensors "scaffold.c/<name>"); it trains with every
// gradient corrected by c - c_i, then sets
//   c_i+ = c_i - c + (x - y) / (K * lr)       (K local steps, y local model)
// and sends its delta y - x followed by dc = c_i+ - c_i (tensors
// "scaffold.dc/<name>"). The server adds the mean delta to x and
// |S|/N * mean(dc) to c. (With SGD momentum or weight decay the c_i update
// is the paper's approximation for plain SGD.)
//
// Thread-compatible.
#ifndef FEDGE_COMMON_SCAFFOLD_H_
#define FEDGE_COMMON_SCAFFOLD_H_

#include <optional>
#include <string>

#include "absl/status/statusor.h"
#include "common/tensor_buffer.h"

namespace fedge {

inline constexpr char kScaffoldControlPrefix[] = "scaffold.c/";
inline constexpr char kScaffoldDeltaPrefix[] = "scaffold.dc/";

// The schema of a control variate (or its delta) for `model`: one float32
// tensor "<prefix><name>" per float32 tensor of the model.
ModelSchema ScaffoldSchema(const ModelSchema& model, const std::string& prefix);
// Zeros of ScaffoldSchema(model, prefix).
ModelState ScaffoldZeros(const ModelSchema& model, const std::string& prefix);

// Splits a download (model tensors, then "scaffold.c/" tensors) into the
// model and c. INVALID_ARGUMENT when the control part does not fit the model.
absl::Status SplitScaffoldDownload(ModelState download, ModelState* model,
                                   ModelState* control);

// `download` without its "scaffold.c/" tensors (the model alone, e.g. for
// prediction and evaluation); a model without them is returned unchanged.
ModelState StripScaffoldTensors(ModelState download);

// The agent's side: holds c_i (zeros at first, or restored from its state
// directory).
class ScaffoldClient {
 public:
  // `control` (c_i) must have ScaffoldSchema(model, kScaffoldControlPrefix)
  // or be empty (zeros). INVALID_ARGUMENT otherwise.
  static absl::StatusOr<ScaffoldClient> Create(const ModelSchema& model,
                                               ModelState control);

  // The gradient correction c - c_i, with the model's schema (zeros for
  // non-float tensors). INVALID_ARGUMENT when `server_control` does not fit.
  absl::StatusOr<ModelState> Correction(const ModelState& server_control) const;

  // After local training: returns dc (schema ScaffoldSchema(model,
  // kScaffoldDeltaPrefix)) and replaces c_i by c_i + dc. `num_steps` > 0 and
  // `learning_rate` > 0, else INVALID_ARGUMENT (nothing changed).
  absl::StatusOr<ModelState> Finish(const ModelState& delta,
                                    const ModelState& server_control,
                                    int64_t num_steps, double learning_rate);

  // c_i, to persist (canonical encoding) between rounds and restarts.
  const ModelState& control() const { return control_; }

 private:
  ScaffoldClient(ModelSchema model, ModelState control)
      : model_(std::move(model)), control_(std::move(control)) {}
  ModelSchema model_;
  ModelState control_;
};

}  // namespace fedge

#endif  // FEDGE_COMMON_SCAFFOLD_H_

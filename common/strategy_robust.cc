// The robust strategies against poisoned updates. They need every update of
// a round at once, so they keep a copy of each (float32, in memory): the
// coordinator's memory is the model times the updates of a round, bounded
// by max_buffered_updates (RESOURCE_EXHAUSTED beyond it).
//
//   median        coordinate-wise median               (Yin et al. 2018)
//   trimmed_mean  coordinate-wise mean without the trim_beta fraction of
//                 largest and smallest values          (Yin et al. 2018)
//   krum          the update closest to its n - f - 2 neighbours
//   multi_krum    the mean of the m best by Krum's score
//                                                  (Blanchard et al. 2017)
// Updates are not weighted by examples (a weight is exactly what a
// poisoner would inflate).
#include <algorithm>

#include "absl/strings/str_cat.h"
#include "common/robust_aggregation.h"
#include "common/status_macros.h"
#include "common/strategy_impl.h"

namespace fedge {
namespace {

class Robust final : public Strategy {
 public:
  Robust(const StrategyOptions& options, const ModelState& model)
      : Strategy(options), schema_(SchemaOf(model)) {}

  absl::string_view name() const override { return options_.name; }

  absl::Status CheckUpdate(const FitResult& r) const override {
    if (r.delta == nullptr) {
      return absl::InvalidArgumentError("update without a delta");
    }
    RETURN_IF_ERROR(CheckSchema(schema_, *r.delta));
    RETURN_IF_ERROR(CheckFinite(*r.delta));
    if (static_cast<int>(updates_.size()) >= options_.max_buffered_updates) {
      return absl::ResourceExhaustedError(
          absl::StrCat("strategy ", options_.name,
                       " keeps every update of a round and "
                       "already holds strategy.max_buffered_updates = ",
                       options_.max_buffered_updates, " of them"));
    }
    return absl::OkStatus();
  }

  void Fold(const FitResult& r) override {
    updates_.push_back(r.delta->Clone());
  }

  int64_t num_updates() const override { return updates_.size(); }

  absl::StatusOr<ModelState> AggregateFit(const FitRound& round,
                                          const ModelState& global) override {
    absl::StatusOr<ModelState> next = Aggregate(global);
    DiscardRound();
    return next;
  }

  void DiscardRound() override { updates_.clear(); }

  int64_t StateBytes() const override {
    int64_t bytes = 0;
    for (const ModelState& u : updates_) bytes += u.NumBytes();
    return bytes;
  }

 private:
  absl::StatusOr<ModelState> Aggregate(const ModelState& global) {
    if (updates_.empty()) {
      return absl::FailedPreconditionError("no update to aggregate");
    }
    std::vector<const ModelState*> all;
    for (const ModelState& u : updates_) all.push_back(&u);
    ModelState step;
    const std::string& n = options_.name;
    if (n == "median") {
      ASSIGN_OR_RETURN(step, CoordinateMedian(all));
    } else if (n == "trimmed_mean") {
      ASSIGN_OR_RETURN(step, TrimmedMean(all, options_.trim_beta));
    } else {
      const int64_t need = 2 * int64_t{options_.krum_f} + 3;
      if (static_cast<int64_t>(all.size()) < need) {
        return absl::FailedPreconditionError(absl::StrCat(
            n, " with krum_f = ", options_.krum_f, " needs at least ", need,
            " updates, the round has ", all.size()));
      }
      const int m = n == "krum" ? 1
                    : options_.krum_m > 0
                        ? std::min<int>(options_.krum_m, all.size())
                        : static_cast<int>(all.size()) - options_.krum_f;
      ASSIGN_OR_RETURN(std::vector<size_t> chosen,
                       MultiKrumSelect(all, options_.krum_f, m));
      std::vector<const ModelState*> picked;
      for (size_t i : chosen) picked.push_back(all[i]);
      // The plain mean of the chosen (a trimmed mean that trims nothing).
      ASSIGN_OR_RETURN(step, TrimmedMean(picked, 0.0));
    }
    ModelState next = global.Clone();
    const float lr = static_cast<float>(options_.server_learning_rate >= 0
                                            ? options_.server_learning_rate
                                            : 1.0);
    RETURN_IF_ERROR(AddScaledInPlace(next, step, lr));
    RETURN_IF_ERROR(CheckAggregate(next));
    return next;
  }

  const ModelSchema schema_;
  std::vector<ModelState> updates_;
};

}  // namespace

absl::StatusOr<std::unique_ptr<Strategy>> NewRobustStrategy(
    const StrategyOptions& options, const ModelState& model) {
  return std::unique_ptr<Strategy>(new Robust(options, model));
}

}  // namespace fedge

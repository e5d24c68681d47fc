#include "server/engine_config.h"

namespace fedge {

RoundEngineOptions ToRoundEngineOptions(const v1::StrategyConfig& s,
                                        int num_rounds) {
  RoundEngineOptions o;
  o.min_available_agents = s.min_available_agents();
  o.min_fit_agents = s.min_fit_agents();
  o.round_deadline = absl::Milliseconds(s.round_deadline_ms());
  o.num_rounds = num_rounds;
  return o;
}

}  // namespace fedge

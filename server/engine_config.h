// StrategyConfig (proto) -> RoundEngineOptions, shared by the simulator and
// the coordinator. Validate the config first (common/fl_config.h).
#ifndef FEDGE_SERVER_ENGINE_CONFIG_H_
#define FEDGE_SERVER_ENGINE_CONFIG_H_

#include "fedge/v1/config.pb.h"
#include "server/round_engine.h"

namespace fedge {

RoundEngineOptions ToRoundEngineOptions(const v1::StrategyConfig& strategy,
                                        int num_rounds);

}  // namespace fedge

#endif  // FEDGE_SERVER_ENGINE_CONFIG_H_

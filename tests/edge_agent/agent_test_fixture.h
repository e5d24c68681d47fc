// AgentTest: the fixture of the agent loop's tests: a FakeCoordinatorClient
// serving two tiny models (versions 0 and 1), FakeTrainers, a model cache
// in a fresh temporary folder, a FakeClock that sleeps advance, and
// helpers that build polls.
#ifndef FEDGE_TESTS_EDGE_AGENT_AGENT_TEST_FIXTURE_H_
#define FEDGE_TESTS_EDGE_AGENT_AGENT_TEST_FIXTURE_H_

#include <unistd.h>

#include <filesystem>
#include <functional>
#include <memory>
#include <string>
#include <vector>

#include "absl/strings/str_cat.h"
#include "common/clock.h"
#include "common/model_codec.h"
#include "common/sha256.h"
#include "edge_agent/agent.h"
#include "edge_agent/model_cache.h"
#include "gtest/gtest.h"
#include "tests/edge_agent/fake_coordinator_client.h"

namespace fedge {

inline ModelState TinyModel(float value) {
  std::vector<TensorBuffer> tensors;
  tensors.push_back(*TensorBuffer::FromFloats("w", {2}, {value, -value}));
  return ModelState(std::move(tensors));
}

inline std::string Sha(const ModelState& model) {
  return ToHex(ModelDigest(model));
}

inline v1::PollResponse TaskPoll(int64_t round, int64_t version,
                                 const ModelState& model) {
  v1::PollResponse poll;
  v1::TrainTask* task = poll.mutable_train();
  task->set_round(round);
  task->set_model_version(version);
  task->set_model_sha256(Sha(model));
  task->mutable_plan()->set_epochs(1);
  task->mutable_plan()->set_batch_size(10);
  task->mutable_plan()->set_learning_rate(0.1);
  task->mutable_plan()->set_seed(1000 + round);
  return poll;
}

inline v1::PollResponse WaitPoll(int64_t retry_after_ms) {
  v1::PollResponse poll;
  poll.set_wait_retry_after_ms(retry_after_ms);
  return poll;
}

class AgentTest : public testing::Test {
 protected:
  void SetUp() override {
    dir_ = absl::StrCat(testing::TempDir(), "/fedge_agent_test.", getpid(), ".",
                        counter_++);
    std::filesystem::remove_all(dir_);
    ModelCacheOptions options;
    options.state_dir = dir_;
    cache_ = *ModelCache::Open(options);
    client_.models[0] = TinyModel(1);
    client_.models[1] = TinyModel(2);
  }
  void TearDown() override {
    cache_.reset();
    std::filesystem::remove_all(dir_);
  }

  static AgentOptions DefaultOptions() {
    AgentOptions o;
    o.agent_id = "agent-7";
    o.num_examples = 600;
    o.architectures = {"2nn"};
    o.initial_backoff = absl::Milliseconds(200);
    o.max_backoff = absl::Seconds(1);
    o.seed = 42;
    return o;
  }

  std::unique_ptr<Agent> MakeAgent(AgentOptions options = DefaultOptions()) {
    auto factory = [this](const v1::JoinResponse& join)
        -> absl::StatusOr<std::unique_ptr<LocalTrainer>> {
      ++factory_calls_;
      if (!factory_error_.ok()) return factory_error_;
      return std::make_unique<FakeTrainer>(&trainer_log_);
    };
    auto sleep = [this](absl::Duration d) {
      sleeps_.push_back(d);
      clock_.Advance(d);
      if (on_sleep_) on_sleep_();
    };
    return *Agent::Create(std::move(options), &client_, factory, cache_.get(),
                          &clock_, sleep);
  }

  static inline int counter_ = 0;
  std::string dir_;
  std::unique_ptr<ModelCache> cache_;
  FakeCoordinatorClient client_;
  TrainerLog trainer_log_;
  int factory_calls_ = 0;
  absl::Status factory_error_;
  FakeClock clock_;
  std::vector<absl::Duration> sleeps_;
  std::function<void()> on_sleep_;
};

}  // namespace fedge

#endif  // FEDGE_TESTS_EDGE_AGENT_AGENT_TEST_FIXTURE_H_

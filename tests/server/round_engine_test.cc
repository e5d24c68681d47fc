#include "server/round_engine.h"

#include <algorithm>
#include <cmath>
#include <functional>
#include <string>
#include <thread>
#include <utility>
#include <vector>

#include "absl/strings/str_cat.h"
#include "absl/synchronization/mutex.h"
#include "common/clock.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"

namespace fedge {
namespace {

using ::testing::ElementsAre;
using ::testing::HasSubstr;
using ::testing::IsEmpty;
using ::testing::SizeIs;

constexpr absl::StatusCode kOk = absl::StatusCode::kOk;
constexpr absl::StatusCode kNotFound = absl::StatusCode::kNotFound;
constexpr absl::StatusCode kAborted = absl::StatusCode::kAborted;
constexpr absl::StatusCode kAlreadyExists = absl::StatusCode::kAlreadyExists;
constexpr absl::StatusCode kFailedPrecondition =
    absl::StatusCode::kFailedPrecondition;
constexpr absl::StatusCode kInvalidArgument =
    absl::StatusCode::kInvalidArgument;

// Nobody times out unless a test says otherwise.
RoundEngineOptions TestOptions() {
  RoundEngineOptions options;
  options.round_deadline = absl::Minutes(10);
  options.agent_timeout = absl::Hours(1);
  options.num_rounds = 3;
  return options;
}

std::unique_ptr<RoundEngine> MakeEngine(const RoundEngineOptions& options,
                                        Clock* clock) {
  absl::StatusOr<std::unique_ptr<RoundEngine>> engine =
      RoundEngine::Create(options, clock);
  EXPECT_TRUE(engine.ok()) << engine.status();
  return engine.ok() ? std::move(engine).value() : nullptr;
}

std::string AgentId(int i) { return absl::StrCat(i < 10 ? "a0" : "a", i); }

void AddAgents(RoundEngine& engine, int first, int n) {
  for (int i = first; i < first + n; ++i) {
    ASSERT_TRUE(engine.AddAgent(AgentId(i)).ok()) << AgentId(i);
  }
}

std::string Upload(const std::string& agent_id) { return "up-" + agent_id; }

// What a driver does each tick: apply outcomes, else start the next round
// when the engine can, selecting every available agent (selection itself
// is the strategy's, tested in tests/common/strategy_test.cc).
std::vector<RoundOutcome> Drive(RoundEngine& engine) {
  std::vector<RoundOutcome> outcomes = engine.Tick();
  if (outcomes.empty() && engine.CanStartRound()) {
    EXPECT_TRUE(engine.StartRound(engine.AvailableAgents()).ok());
  }
  return outcomes;
}

absl::Status Accept(RoundEngine& engine, const std::string& agent_id,
                    int64_t round) {
  return engine.AcceptResult(agent_id, round, Upload(agent_id));
}

// Starts a round with all of `n` fresh agents and returns its id.
int64_t StartRound(RoundEngine& engine, int n) {
  AddAgents(engine, 0, n);
  EXPECT_THAT(Drive(engine), IsEmpty());
  EXPECT_EQ(engine.state(), RoundState::kInProgress);
  return engine.current_round();
}

TEST(RoundEngineTest, Create_InvalidOptions_NameTheOption) {
  struct Case {
    std::function<void(RoundEngineOptions&)> mutate;
    std::string message;
  };
  const std::vector<Case> cases = {
      {[](auto& o) { o.min_available_agents = 0; }, "min_available_agents"},
      {[](auto& o) { o.min_fit_agents = 0; }, "min_fit_agents must be >= 1"},
      {[](auto& o) { o.min_fit_agents = 2; },
       "min_fit_agents (2) must be <= min_available_agents (1)"},

      {[](auto& o) { o.round_deadline = absl::ZeroDuration(); },
       "round_deadline"},
      {[](auto& o) { o.num_rounds = 0; }, "num_rounds"},
      {[](auto& o) { o.agent_timeout = absl::Seconds(-1); }, "agent_timeout"},
  };
  FakeClock clock;
  for (const Case& c : cases) {
    RoundEngineOptions options;
    c.mutate(options);
    absl::StatusOr<std::unique_ptr<RoundEngine>> engine =
        RoundEngine::Create(options, &clock);
    EXPECT_EQ(engine.status().code(), kInvalidArgument) << c.message;
    EXPECT_THAT(std::string(engine.status().message()), HasSubstr(c.message));
  }
  EXPECT_EQ(RoundEngine::Create(RoundEngineOptions(), nullptr).status().code(),
            kInvalidArgument);
  EXPECT_TRUE(RoundEngine::Create(RoundEngineOptions(), &clock).ok());
}

TEST(RoundEngineTest, Roster_AddHeartbeatRemove) {
  FakeClock clock;
  std::unique_ptr<RoundEngine> engine = MakeEngine(TestOptions(), &clock);
  EXPECT_EQ(engine->AddAgent("").code(), kInvalidArgument);
  EXPECT_EQ(engine->AddAgent("b").code(), kOk);
  EXPECT_EQ(engine->AddAgent("a").code(), kOk);
  EXPECT_EQ(engine->AddAgent("a").code(), kAlreadyExists);
  EXPECT_THAT(engine->AvailableAgents(), ElementsAre("a", "b"));
  EXPECT_EQ(engine->Heartbeat("a").code(), kOk);
  EXPECT_EQ(engine->Heartbeat("zz").code(), kNotFound);
  EXPECT_EQ(engine->RemoveAgent("zz").code(), kNotFound);
  EXPECT_EQ(engine->RemoveAgent("a").code(), kOk);
  EXPECT_THAT(engine->AvailableAgents(), ElementsAre("b"));
}

TEST(RoundEngineTest, WaitsForMinAvailableAgents) {
  FakeClock clock;
  RoundEngineOptions options = TestOptions();
  options.min_available_agents = 3;
  std::unique_ptr<RoundEngine> engine = MakeEngine(options, &clock);
  AddAgents(*engine, 0, 2);
  EXPECT_THAT(Drive(*engine), IsEmpty());
  EXPECT_EQ(engine->state(), RoundState::kWaitingForAgents);
  EXPECT_EQ(engine->current_round(), 0);
  EXPECT_EQ(engine->AssignedRound(AgentId(0)).status().code(), kNotFound);
  EXPECT_EQ(engine->round_deadline_time(), absl::InfinitePast());

  AddAgents(*engine, 2, 1);
  EXPECT_THAT(Drive(*engine), IsEmpty());
  EXPECT_EQ(engine->state(), RoundState::kInProgress);
  EXPECT_EQ(engine->current_round(), 1);
  EXPECT_EQ(engine->round_deadline_time(), clock.Now() + absl::Minutes(10));
  EXPECT_EQ(*engine->AssignedRound(AgentId(0)), 1);
}

TEST(RoundEngineTest, AllReport_ClosesRoundCompleted) {
  FakeClock clock;
  std::unique_ptr<RoundEngine> engine = MakeEngine(TestOptions(), &clock);
  const int64_t round = StartRound(*engine, 3);
  EXPECT_THAT(engine->SelectedAgents(), ElementsAre("a00", "a01", "a02"));
  EXPECT_FALSE(engine->HasOutcomeWaiting());
  for (const char* id : {"a02", "a00", "a01"}) {
    EXPECT_EQ(*engine->AssignedRound(id), round);
    EXPECT_EQ(Accept(*engine, id, round).code(), kOk);
    EXPECT_EQ(engine->AssignedRound(id).status().code(), kNotFound);
  }
  // Closed at once; the outcome comes with the next Tick.
  EXPECT_EQ(engine->state(), RoundState::kWaitingForAgents);
  EXPECT_EQ(engine->completed_rounds(), 1);
  EXPECT_THAT(engine->SelectedAgents(), IsEmpty());
  EXPECT_TRUE(engine->HasOutcomeWaiting());
  std::vector<RoundOutcome> outcomes = Drive(*engine);
  EXPECT_FALSE(engine->HasOutcomeWaiting());
  ASSERT_THAT(outcomes, SizeIs(1));
  EXPECT_EQ(outcomes[0].round, round);
  EXPECT_TRUE(outcomes[0].completed);
  EXPECT_THAT(outcomes[0].reported, ElementsAre("a02", "a00", "a01"));
  EXPECT_THAT(outcomes[0].failed, IsEmpty());
}

TEST(RoundEngineTest, TickReturningOutcome_StartsNextRoundOnlyOnNextTick) {
  FakeClock clock;
  std::unique_ptr<RoundEngine> engine = MakeEngine(TestOptions(), &clock);
  const int64_t round = StartRound(*engine, 2);
  for (const std::string& id : engine->SelectedAgents()) {
    ASSERT_EQ(Accept(*engine, id, round).code(), kOk);
  }
  EXPECT_THAT(Drive(*engine), SizeIs(1));
  EXPECT_EQ(engine->state(), RoundState::kWaitingForAgents);
  EXPECT_THAT(Drive(*engine), IsEmpty());
  EXPECT_EQ(engine->state(), RoundState::kInProgress);
  EXPECT_EQ(engine->current_round(), round + 1);
}

TEST(RoundEngineTest, RemoveAgent_SelectedAgentCountsAsFailed) {
  FakeClock clock;
  std::unique_ptr<RoundEngine> engine = MakeEngine(TestOptions(), &clock);
  const int64_t round = StartRound(*engine, 3);
  ASSERT_EQ(Accept(*engine, "a00", round).code(), kOk);
  ASSERT_EQ(engine->RemoveAgent("a01").code(), kOk);
  EXPECT_EQ(Accept(*engine, "a01", round).code(), kNotFound);
  ASSERT_EQ(Accept(*engine, "a02", round).code(), kOk);
  std::vector<RoundOutcome> outcomes = Drive(*engine);
  ASSERT_THAT(outcomes, SizeIs(1));
  EXPECT_TRUE(outcomes[0].completed);
  EXPECT_THAT(outcomes[0].reported, ElementsAre("a00", "a02"));
  EXPECT_THAT(outcomes[0].failed, ElementsAre("a01"));
}

TEST(RoundEngineTest, AgentTimeout_DropsAgentAndCountsAsFailed) {
  FakeClock clock;
  RoundEngineOptions options = TestOptions();
  options.agent_timeout = absl::Seconds(60);
  std::unique_ptr<RoundEngine> engine = MakeEngine(options, &clock);
  const int64_t round = StartRound(*engine, 3);
  clock.Advance(absl::Seconds(30));
  ASSERT_EQ(engine->Heartbeat("a00").code(), kOk);
  ASSERT_EQ(engine->AddAgent("a01").code(), kAlreadyExists);  // Re-join.
  clock.Advance(absl::Seconds(30));
  EXPECT_THAT(Drive(*engine), IsEmpty());
  EXPECT_THAT(engine->AvailableAgents(), ElementsAre("a00", "a01"));
  EXPECT_EQ(engine->Heartbeat("a02").code(), kNotFound);
  EXPECT_EQ(engine->AssignedRound("a02").status().code(), kNotFound);

  ASSERT_EQ(Accept(*engine, "a00", round).code(), kOk);
  ASSERT_EQ(Accept(*engine, "a01", round).code(), kOk);
  std::vector<RoundOutcome> outcomes = Drive(*engine);
  ASSERT_THAT(outcomes, SizeIs(1));
  EXPECT_TRUE(outcomes[0].completed);
  EXPECT_THAT(outcomes[0].failed, ElementsAre("a02"));
}

TEST(RoundEngineTest, DeadlineWithQuorum_ClosesRound) {
  FakeClock clock;
  RoundEngineOptions options = TestOptions();
  options.min_available_agents = 4;
  options.min_fit_agents = 2;
  std::unique_ptr<RoundEngine> engine = MakeEngine(options, &clock);
  const int64_t round = StartRound(*engine, 4);
  ASSERT_EQ(Accept(*engine, "a03", round).code(), kOk);
  ASSERT_EQ(Accept(*engine, "a01", round).code(), kOk);
  EXPECT_EQ(engine->num_reported(), 2u);
  clock.Advance(absl::Minutes(10) - absl::Seconds(1));
  EXPECT_THAT(Drive(*engine), IsEmpty());
  clock.Advance(absl::Seconds(1));
  std::vector<RoundOutcome> outcomes = Drive(*engine);
  ASSERT_THAT(outcomes, SizeIs(1));
  EXPECT_EQ(outcomes[0].round, round);
  EXPECT_TRUE(outcomes[0].completed);
  EXPECT_THAT(outcomes[0].reported, ElementsAre("a03", "a01"));
  EXPECT_THAT(outcomes[0].failed, ElementsAre("a00", "a02"));
  EXPECT_EQ(engine->completed_rounds(), 1);
  EXPECT_EQ(engine->num_reported(), 0u);
}

TEST(RoundEngineTest, DeadlineWithoutQuorum_AbandonsAndNextRoundGetsNewId) {
  FakeClock clock;
  RoundEngineOptions options = TestOptions();
  options.min_available_agents = 3;
  options.min_fit_agents = 2;
  options.num_rounds = 1;
  std::unique_ptr<RoundEngine> engine = MakeEngine(options, &clock);
  const int64_t round = StartRound(*engine, 3);
  ASSERT_EQ(Accept(*engine, "a00", round).code(), kOk);
  clock.Advance(absl::Minutes(10));
  std::vector<RoundOutcome> outcomes = Drive(*engine);
  ASSERT_THAT(outcomes, SizeIs(1));
  EXPECT_FALSE(outcomes[0].completed);
  EXPECT_THAT(outcomes[0].reported, ElementsAre("a00"));
  EXPECT_THAT(outcomes[0].failed, ElementsAre("a01", "a02"));
  EXPECT_EQ(engine->completed_rounds(), 0);
  EXPECT_EQ(engine->state(), RoundState::kWaitingForAgents);

  EXPECT_THAT(Drive(*engine), IsEmpty());
  EXPECT_EQ(engine->state(), RoundState::kInProgress);
  EXPECT_EQ(engine->current_round(), round + 1);
  EXPECT_EQ(*engine->AssignedRound("a00"), round + 1);
}

TEST(RoundEngineTest, AllFailed_AbandonsAtOnce) {
  FakeClock clock;
  RoundEngineOptions options = TestOptions();
  std::unique_ptr<RoundEngine> engine = MakeEngine(options, &clock);
  const int64_t round = StartRound(*engine, 2);
  EXPECT_EQ(engine->ReportFailure("a00", round).code(), kOk);
  EXPECT_EQ(engine->ReportFailure("a00", round).code(), kOk);  // Repeated.
  EXPECT_EQ(engine->AssignedRound("a00").status().code(), kNotFound);
  EXPECT_EQ(Accept(*engine, "a00", round).code(), kFailedPrecondition);
  EXPECT_EQ(engine->RemoveAgent("a01").code(), kOk);
  std::vector<RoundOutcome> outcomes = Drive(*engine);
  ASSERT_THAT(outcomes, SizeIs(1));
  EXPECT_FALSE(outcomes[0].completed);
  EXPECT_THAT(outcomes[0].reported, IsEmpty());
  EXPECT_THAT(outcomes[0].failed, ElementsAre("a00", "a01"));
}

TEST(RoundEngineTest, ReportFailure_StaleUnselectedOrReported_Refused) {
  FakeClock clock;
  std::unique_ptr<RoundEngine> engine = MakeEngine(TestOptions(), &clock);
  AddAgents(*engine, 0, 3);
  const int64_t round = *engine->StartRound({"a01", "a00"});
  const std::vector<std::string> selected = engine->SelectedAgents();
  std::string unselected;
  for (const std::string& id : engine->AvailableAgents()) {
    if (std::find(selected.begin(), selected.end(), id) == selected.end()) {
      unselected = id;
    }
  }
  EXPECT_EQ(engine->ReportFailure(selected[0], round + 1).code(), kAborted);
  EXPECT_EQ(engine->ReportFailure(unselected, round).code(),
            kFailedPrecondition);
  EXPECT_EQ(engine->ReportFailure("zz", round).code(), kNotFound);
  ASSERT_EQ(Accept(*engine, selected[0], round).code(), kOk);
  EXPECT_EQ(engine->ReportFailure(selected[0], round).code(),
            kFailedPrecondition);
}

TEST(RoundEngineTest, LateResultAfterClose_AbortedAndNotCounted) {
  FakeClock clock;
  std::unique_ptr<RoundEngine> engine = MakeEngine(TestOptions(), &clock);
  const int64_t round = StartRound(*engine, 2);
  ASSERT_EQ(Accept(*engine, "a00", round).code(), kOk);
  clock.Advance(absl::Minutes(10));
  std::vector<RoundOutcome> outcomes = Drive(*engine);
  ASSERT_THAT(outcomes, SizeIs(1));
  EXPECT_EQ(engine->CheckResult("a01", round, "late").code(), kAborted);
  EXPECT_EQ(engine->AcceptResult("a01", round, "late").code(), kAborted);

  EXPECT_THAT(Drive(*engine), IsEmpty());  // Round 2 starts.
  EXPECT_EQ(engine->AcceptResult("a01", round, "late").code(), kAborted);
  EXPECT_EQ(engine->AcceptResult("a01", round + 5, "early").code(), kAborted);
  EXPECT_EQ(engine->num_reported(), 0u);
  EXPECT_THAT(outcomes[0].reported, ElementsAre("a00"));
}

TEST(RoundEngineTest, DuplicateUpload_AlreadyExistsAndCountedOnce) {
  FakeClock clock;
  std::unique_ptr<RoundEngine> engine = MakeEngine(TestOptions(), &clock);
  const int64_t round = StartRound(*engine, 2);
  EXPECT_EQ(engine->AcceptResult("a00", round, "u1").code(), kOk);
  EXPECT_EQ(engine->CheckResult("a00", round, "u1").code(), kAlreadyExists);
  EXPECT_EQ(engine->AcceptResult("a00", round, "u1").code(), kAlreadyExists);
  EXPECT_EQ(engine->num_reported(), 1u);
  EXPECT_EQ(engine->AcceptResult("a01", round, "u9").code(), kOk);
  // The retry of the result that closed the round is still recognized.
  EXPECT_EQ(engine->AcceptResult("a01", round, "u9").code(), kAlreadyExists);
  EXPECT_THAT(Drive(*engine), SizeIs(1));
  EXPECT_THAT(Drive(*engine), IsEmpty());  // Round 2 starts.
  EXPECT_EQ(engine->AcceptResult("a00", round, "u1").code(), kAlreadyExists);
  EXPECT_EQ(engine->num_reported(), 0u);
}

TEST(RoundEngineTest, DifferentUploadIdAfterReport_Refused) {
  FakeClock clock;
  std::unique_ptr<RoundEngine> engine = MakeEngine(TestOptions(), &clock);
  const int64_t round = StartRound(*engine, 2);
  ASSERT_EQ(engine->AcceptResult("a00", round, "u1").code(), kOk);
  EXPECT_EQ(engine->CheckResult("a00", round, "u2").code(),
            kFailedPrecondition);
  EXPECT_EQ(engine->AcceptResult("a00", round, "u2").code(),
            kFailedPrecondition);
  EXPECT_EQ(engine->num_reported(), 1u);
}

TEST(RoundEngineTest, ResultFromUnselectedOrUnknownAgent_Refused) {
  FakeClock clock;
  std::unique_ptr<RoundEngine> engine = MakeEngine(TestOptions(), &clock);
  AddAgents(*engine, 0, 3);
  const int64_t round = *engine->StartRound({"a02"});
  ASSERT_EQ(engine->AddAgent("late-joiner").code(), kOk);
  const std::string chosen = engine->SelectedAgents().at(0);
  for (const std::string& id : engine->AvailableAgents()) {
    if (id == chosen) continue;
    EXPECT_EQ(engine->AssignedRound(id).status().code(), kNotFound) << id;
    EXPECT_EQ(Accept(*engine, id, round).code(), kFailedPrecondition) << id;
  }
  EXPECT_EQ(Accept(*engine, "zz", round).code(), kNotFound);
  EXPECT_EQ(engine->AcceptResult(chosen, round, "").code(), kInvalidArgument);
  EXPECT_EQ(engine->num_reported(), 0u);
}

TEST(RoundEngineTest, StartRound_RefusesBadSelectionsAndWrongPhase) {
  FakeClock clock;
  RoundEngineOptions options = TestOptions();
  options.min_available_agents = 2;
  std::unique_ptr<RoundEngine> engine = MakeEngine(options, &clock);
  AddAgents(*engine, 0, 1);
  EXPECT_FALSE(engine->CanStartRound());
  EXPECT_EQ(engine->StartRound({"a00"}).status().code(), kFailedPrecondition);
  AddAgents(*engine, 1, 1);
  EXPECT_TRUE(engine->CanStartRound());
  EXPECT_EQ(engine->StartRound({}).status().code(), kInvalidArgument);
  EXPECT_THAT(
      std::string(engine->StartRound({"a00", "ghost"}).status().message()),
      HasSubstr("ghost"));
  // Duplicates are ignored; the selection is kept sorted.
  EXPECT_EQ(*engine->StartRound({"a01", "a00", "a01"}), 1);
  EXPECT_THAT(engine->SelectedAgents(), ElementsAre("a00", "a01"));
  EXPECT_FALSE(engine->CanStartRound());
  EXPECT_EQ(engine->StartRound({"a00"}).status().code(), kFailedPrecondition);
}

TEST(RoundEngineTest, CheckResult_DoesNotRecord) {
  FakeClock clock;
  std::unique_ptr<RoundEngine> engine = MakeEngine(TestOptions(), &clock);
  const int64_t round = StartRound(*engine, 1);
  EXPECT_EQ(engine->CheckResult("a00", round, "u").code(), kOk);
  EXPECT_EQ(engine->CheckResult("a00", round, "u").code(), kOk);
  EXPECT_EQ(engine->num_reported(), 0u);
  EXPECT_EQ(engine->state(), RoundState::kInProgress);
  EXPECT_EQ(engine->AcceptResult("a00", round, "u").code(), kOk);
}

TEST(RoundEngineTest, ReachesDoneAfterNumRounds_AbandonedRoundsDoNotCount) {
  FakeClock clock;
  RoundEngineOptions options = TestOptions();
  options.num_rounds = 2;
  std::unique_ptr<RoundEngine> engine = MakeEngine(options, &clock);
  int64_t round = StartRound(*engine, 2);
  for (const char* id : {"a00", "a01"})
    ASSERT_EQ(Accept(*engine, id, round).code(), kOk);
  EXPECT_THAT(Drive(*engine), SizeIs(1));
  EXPECT_THAT(Drive(*engine), IsEmpty());
  round = engine->current_round();
  clock.Advance(absl::Minutes(10));  // Nobody reports: abandoned.
  ASSERT_THAT(Drive(*engine),
              ElementsAre(testing::Field(&RoundOutcome::completed, false)));
  EXPECT_THAT(Drive(*engine), IsEmpty());
  EXPECT_EQ(engine->current_round(), 3);
  for (const char* id : {"a00", "a01"})
    ASSERT_EQ(Accept(*engine, id, 3).code(), kOk);
  EXPECT_EQ(engine->state(), RoundState::kDone);
  EXPECT_THAT(Drive(*engine), SizeIs(1));
  EXPECT_THAT(Drive(*engine), IsEmpty());
  EXPECT_EQ(engine->state(), RoundState::kDone);
  EXPECT_EQ(engine->completed_rounds(), 2);
  EXPECT_EQ(engine->current_round(), 3);
  EXPECT_EQ(engine->AssignedRound("a00").status().code(), kFailedPrecondition);
  EXPECT_EQ(engine->AcceptResult("a00", 4, "u").code(), kAborted);
}

TEST(RoundEngineTest, RestoreProgress_ResumesNumbering) {
  FakeClock clock;
  RoundEngineOptions options = TestOptions();
  options.num_rounds = 4;
  std::unique_ptr<RoundEngine> engine = MakeEngine(options, &clock);
  EXPECT_EQ(engine->RestoreProgress(0, 0).code(), kInvalidArgument);
  EXPECT_EQ(engine->RestoreProgress(3, 3).code(), kInvalidArgument);
  EXPECT_EQ(engine->RestoreProgress(3, -1).code(), kInvalidArgument);
  ASSERT_EQ(engine->RestoreProgress(5, 3).code(), kOk);
  EXPECT_EQ(engine->current_round(), 4);
  EXPECT_EQ(engine->completed_rounds(), 3);
  const int64_t round = StartRound(*engine, 1);
  EXPECT_EQ(round, 5);
  EXPECT_EQ(engine->RestoreProgress(9, 3).code(), kFailedPrecondition);
  ASSERT_EQ(Accept(*engine, "a00", round).code(), kOk);
  EXPECT_EQ(engine->state(), RoundState::kDone);
  EXPECT_EQ(engine->completed_rounds(), 4);
}

TEST(RoundEngineTest, RestoreProgress_AllRoundsDone_IsDone) {
  FakeClock clock;
  std::unique_ptr<RoundEngine> engine = MakeEngine(TestOptions(), &clock);
  ASSERT_EQ(engine->RestoreProgress(4, 3).code(), kOk);
  EXPECT_EQ(engine->state(), RoundState::kDone);
  AddAgents(*engine, 0, 1);
  EXPECT_THAT(Drive(*engine), IsEmpty());
  EXPECT_EQ(engine->state(), RoundState::kDone);
  EXPECT_EQ(engine->RestoreProgress(1, 0).code(), kFailedPrecondition);
}

TEST(RoundEngineTest, ConcurrentCalls_AreSafe) {
  constexpr int kAgents = 40;
  constexpr int kThreads = 4;
  FakeClock clock;
  RoundEngineOptions options = TestOptions();
  options.min_available_agents = kAgents;
  options.num_rounds = 5;
  std::unique_ptr<RoundEngine> engine = MakeEngine(options, &clock);
  AddAgents(*engine, 0, kAgents);

  std::vector<std::thread> workers;
  for (int t = 0; t < kThreads; ++t) {
    workers.emplace_back([&engine, t] {
      while (engine->state() != RoundState::kDone) {
        for (int i = t; i < kAgents; i += kThreads) {
          const std::string id = AgentId(i);
          EXPECT_EQ(engine->Heartbeat(id).code(), kOk);
          absl::StatusOr<int64_t> round = engine->AssignedRound(id);
          if (!round.ok()) continue;
          const std::string upload = absl::StrCat(id, "-", *round);
          const absl::Status first = engine->AcceptResult(id, *round, upload);
          EXPECT_TRUE(first.ok() || absl::IsAborted(first)) << first;
          const absl::Status again = engine->AcceptResult(id, *round, upload);
          EXPECT_TRUE(absl::IsAlreadyExists(again) || absl::IsAborted(again))
              << again;
        }
        std::this_thread::yield();
      }
    });
  }
  std::vector<RoundOutcome> outcomes;
  while (engine->state() != RoundState::kDone || outcomes.size() < 5) {
    for (RoundOutcome& o : Drive(*engine)) outcomes.push_back(std::move(o));
    std::this_thread::yield();
  }
  for (std::thread& w : workers) w.join();

  ASSERT_THAT(outcomes, SizeIs(5));
  for (int r = 0; r < 5; ++r) {
    EXPECT_EQ(outcomes[r].round, r + 1);
    EXPECT_TRUE(outcomes[r].completed);
    std::vector<std::string> reported = outcomes[r].reported;
    std::sort(reported.begin(), reported.end());
    EXPECT_EQ(std::unique(reported.begin(), reported.end()), reported.end());
    EXPECT_THAT(reported, SizeIs(kAgents));
    EXPECT_THAT(outcomes[r].failed, IsEmpty());
  }
}

TEST(RoundEngineTest, CompleteAsyncRound_CountsRounds_DoneAfterTheLast) {
  FakeClock clock;
  std::unique_ptr<RoundEngine> engine = MakeEngine(TestOptions(), &clock);
  AddAgents(*engine, 1, 2);
  for (int64_t round = 1; round <= 3; ++round) {
    absl::StatusOr<int64_t> id = engine->CompleteAsyncRound();
    ASSERT_TRUE(id.ok()) << id.status();
    EXPECT_EQ(*id, round);
    EXPECT_EQ(engine->current_round(), round);
    EXPECT_EQ(engine->completed_rounds(), round);
    EXPECT_TRUE(engine->Tick().empty());  // The caller closed it.
  }
  EXPECT_EQ(engine->state(), RoundState::kDone);
  EXPECT_EQ(engine->CompleteAsyncRound().status().code(), kFailedPrecondition);
  EXPECT_EQ(engine->num_agents(), 2u);
  EXPECT_TRUE(engine->HasAgent(AgentId(1)));
  EXPECT_FALSE(engine->HasAgent("nobody"));
}

TEST(RoundEngineTest, CompleteAsyncRound_RefusedWhileASyncRoundRuns) {
  FakeClock clock;
  std::unique_ptr<RoundEngine> engine = MakeEngine(TestOptions(), &clock);
  AddAgents(*engine, 1, 1);
  ASSERT_TRUE(engine->StartRound({AgentId(1)}).ok());
  EXPECT_EQ(engine->CompleteAsyncRound().status().code(), kFailedPrecondition);
}

}  // namespace
}  // namespace fedge

// Simulator::TrainSecureRound: a synchronous round with secure aggregation,
// every selected agent's SecAggClient and the round's SecAggRound in one
// process (the coordinator runs the same SecAggRound over the network).
#include <memory>
#include <string>
#include <vector>

#include "absl/strings/str_cat.h"
#include "absl/synchronization/mutex.h"
#include "absl/time/clock.h"
#include "absl/time/time.h"
#include "common/logging.h"
#include "common/secagg/client.h"
#include "common/status_macros.h"
#include "server/secagg_round.h"
#include "server/sim/simulator.h"

namespace fedge {

absl::Status Simulator::TrainSecureRound(
    int64_t round, const std::vector<FitInstruction>& plan,
    const ModelState& downloaded, double* slowest) {
  *slowest = 0;
  const size_t n = plan.size();
  std::vector<std::string> ids;
  for (const FitInstruction& f : plan) ids.push_back(f.agent_id);
  // Every agent that does not get to send a masked input is a failure of
  // the round, as in a plain round.
  std::vector<bool> done(n, false);
  auto fail_rest = [&](const absl::Status& why) {
    for (size_t i = 0; i < n; ++i) {
      if (done[i]) continue;
      done[i] = true;
      FEDGE_LOG(WARNING) << "round " << round << ": " << ids[i]
                         << " failed: " << why;
      engine_->ReportFailure(ids[i], round).IgnoreError();
    }
    return why;
  };
  int64_t max_examples = 0;
  for (const std::string& id : ids) {
    max_examples =
        std::max(max_examples, agents_[SimAgentIndex(id)].num_examples);
  }
  const SecureAggregationOptions secure =
      ResolveWeightUnit(options_.secure_aggregation, max_examples);
  absl::StatusOr<std::unique_ptr<SecAggRound>> created = SecAggRound::Create(
      secure,
      absl::StrCat("fedge-sim/seed-", options_.strategy.seed, "/round-", round),
      ids, SchemaOf(global_));
  if (!created.ok()) return fail_rest(created.status());
  SecAggRound& session = **created;
  // Time spent in the server's half (what a coordinator would spend), apart
  // from the agents' (which devices would spend in parallel), for the log.
  absl::Mutex timer_mu;
  absl::Duration server_time, agent_time;
  auto timed = [&](absl::Duration* total, auto&& f) {
    const absl::Time start = absl::Now();
    auto r = f();
    absl::MutexLock lock(&timer_mu);
    *total += absl::Now() - start;
    return r;
  };
  auto server = [&](auto&& f) { return timed(&server_time, f); };
  auto agent = [&](auto&& f) { return timed(&agent_time, f); };
  std::vector<std::unique_ptr<secagg::SecAggClient>> clients(n);
  std::vector<absl::Status> failure(n);

  // Stage 0: every agent advertises its keys; stage 1: shares them.
  pool_.RunBatch(n, [&](size_t i, int) {
    secagg::SecAggClient::Options o;
    o.config = session.config();
    o.client_id = static_cast<int>(i) + 1;
    absl::StatusOr<std::unique_ptr<secagg::SecAggClient>> c =
        secagg::SecAggClient::Create(o);
    absl::StatusOr<std::string> m = agent([&] {
      return c.ok() ? (*c)->AdvertiseKeys()
                    : absl::StatusOr<std::string>(c.status());
    });
    failure[i] =
        m.ok()
            ? server([&] { return session.ReceiveAdvertiseKeys(ids[i], *m); })
            : m.status();
    if (failure[i].ok()) clients[i] = *std::move(c);
  });
  if (absl::Status s = server([&] { return session.CloseAdvertiseKeys(); });
      !s.ok()) {
    return fail_rest(s);
  }
  pool_.RunBatch(n, [&](size_t i, int) {
    if (!failure[i].ok()) return;
    absl::StatusOr<std::string> directory =
        server([&] { return session.KeyDirectoryFor(ids[i]); });
    absl::StatusOr<std::string> m = agent([&] {
      return directory.ok() ? clients[i]->ShareKeys(*directory) : directory;
    });
    failure[i] =
        m.ok() ? server([&] { return session.ReceiveShareKeys(ids[i], *m); })
               : m.status();
  });
  if (absl::Status s = server([&] { return session.CloseShareKeys(); });
      !s.ok()) {
    return fail_rest(s);
  }

  // Stage 2: each agent trains, then masks and sends its weighted update;
  // the session adds it into its running sum at once (nothing kept per
  // agent). An agent failing here dropped after sharing its keys.
  absl::Mutex mu;
  int64_t bytes = 0;
  pool_.RunBatch(n, [&](size_t i, int worker) {
    const FitInstruction& instruction = plan[i];
    absl::Status s = failure[i];
    double seconds = 0;
    int64_t sent = 0;
    if (s.ok()) {
      std::optional<ModelState> extras;
      int64_t encoded_bytes = 0;
      absl::StatusOr<TrainOutput> out =
          TrainLocal(round, instruction, downloaded, *trainers_[worker],
                     &extras, &seconds, &encoded_bytes);
      s = out.status();
      if (out.ok()) {
        FitResult result;
        result.agent_id = instruction.agent_id;
        result.num_examples = static_cast<double>(out->metrics.num_examples);
        result.declared_examples = agents_[SimAgentIndex(ids[i])].num_examples;
        result.num_steps = out->metrics.num_steps;
        result.metrics = out->metrics;
        result.delta = &out->delta;
        // The checks the server can no longer make on a masked update, made
        // by the (honest) agent itself before masking: the poisoning limits
        // (clip or refuse) and the strategy's own.
        s = accumulator_.ApplyLimits(result).status();
        if (s.ok()) s = accumulator_.Check(result);
        absl::StatusOr<SecAggInput> input =
            s.ok() ? SecAggInput::Prepare(secure, options_.strategy, result)
                   : absl::StatusOr<SecAggInput>(s);
        if (input.ok() && input->clipped() > 0) {
          FEDGE_LOG(WARNING) << "round " << round << ": " << ids[i]
                             << " clipped " << input->clipped()
                             << " elements of its masked update to "
                                "strategy.secure_aggregation.clip_range "
                             << options_.secure_aggregation.clip_range;
        }
        absl::StatusOr<std::string> shares =
            input.ok()
                ? server([&] { return session.EncryptedSharesFor(ids[i]); })
                : absl::StatusOr<std::string>(input.status());
        absl::StatusOr<std::string> masked = agent([&] {
          return shares.ok()
                     ? clients[i]->MaskInputPieces(*shares, input->pieces())
                     : shares;
        });
        s = masked.ok() ? server([&] {
          return session.ReceiveMaskedInput(ids[i], *masked);
        })
                        : masked.status();
        if (s.ok()) sent = static_cast<int64_t>(masked->size());
        if (s.ok()) s = engine_->AcceptResult(ids[i], round, "sim");
      }
    }
    absl::MutexLock lock(&mu);
    done[i] = true;
    if (s.ok()) {
      *slowest = std::max(*slowest, seconds);
      bytes += sent;
      return;
    }
    FEDGE_LOG(WARNING) << "round " << round << ": " << ids[i]
                       << " failed: " << s;
    engine_->ReportFailure(ids[i], round).IgnoreError();
  });
  RETURN_IF_ERROR(server([&] { return session.CloseMaskedInputs(); }));

  // Stage 3: the survivors reveal the shares that remove the masks.
  const std::vector<std::string> survivors = session.InputsReceived();
  pool_.RunBatch(survivors.size(), [&](size_t k, int) {
    const int i = *session.ClientId(survivors[k]) - 1;
    absl::StatusOr<std::string> request =
        server([&] { return session.UnmaskingRequestFor(ids[i]); });
    absl::StatusOr<std::string> m = agent(
        [&] { return request.ok() ? clients[i]->Unmask(*request) : request; });
    absl::Status s = m.ok() ? server([&] {
      return session.ReceiveUnmaskingResponse(ids[i], *m);
    })
                            : m.status();
    if (!s.ok()) {
      FEDGE_LOG(WARNING) << "round " << round << ": " << ids[i]
                         << " did not unmask: " << s;
    }
  });
  ASSIGN_OR_RETURN(SecAggSum sum,
                   server([&] { return session.Finish(global_); }));
  secagg_seconds_.server += absl::ToDoubleSeconds(server_time);
  secagg_seconds_.agents += absl::ToDoubleSeconds(agent_time);
  ++secagg_seconds_.rounds;
  FEDGE_LOG(INFO) << "round " << round << ": secure aggregation of "
                  << sum.num_updates << " of " << n << " agents: server "
                  << absl::ToDoubleSeconds(server_time) << " s, agents "
                  << absl::ToDoubleSeconds(agent_time)
                  << " s (summed over agents, training excluded)";
  return accumulator_.AddSum(sum, bytes);
}

}  // namespace fedge

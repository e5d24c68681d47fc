// Differential-privacy mechanisms for DP-FedAvg (McMahan, Ramage, Talwar,
// Zhang, ICLR 2018, "Learning Differentially Private Recurrent Language
// Models"): clip each agent's model update to an L2 bound, add seeded
// Gaussian noise, and the options and noise calibration that the coordinator
// and the agents share. Accounting is in common/privacy_accountant.h.
//
// Central DP (DpFedAvgOptions::local == false). Each round the coordinator
// samples agents, each sampled agent's update (delta) is clipped to L2 norm
// S = clip_norm, and the coordinator adds N(0, (z S)^2) noise per coordinate
// (z = noise_multiplier) to the SUM of the clipped updates. With uniform
// weights (every agent weighs 1, not its example count), adding or removing
// one agent changes that sum by at most S, so the noised sum is the Gaussian
// mechanism with noise multiplier z. The coordinator divides by the EXPECTED
// number of sampled agents n = qN, never by the number that actually
// reported: this is McMahan et al.'s fixed-denominator estimator f~_f
// (Algorithm 1 with w_k = 1, W = N), whose sensitivity is S / n; so noising
// the mean directly needs stddev z S / n (MeanNoiseStddev). Dividing by the
// realized count instead would make the sensitivity data-dependent.
// Per-round privacy is accounted with RdpAccountant::Compose(q, z, 1) where
// q = n / N. That analysis assumes Poisson sampling (each agent independently
// with probability q); sampling exactly n agents uniformly is the standard
// approximation of it (as in TF Federated and Opacus), not a proof.
// The guarantee is user (agent) level, against anyone who sees the released
// models, but it trusts the coordinator: it sees clipped, un-noised updates.
//
// Local DP (local == true). Each agent clips its own update to S and adds
// N(0, (z S)^2) noise (NoiseStddev) before upload, so the coordinator need
// not be trusted. This is much weaker per unit of noise: the agent knows it
// took part (no amplification by sampling), and any two clipped updates can
// differ by 2S, so one round protects that agent's data only with the
// Gaussian mechanism at noise multiplier z / 2: account it per agent with
// Compose(/*q=*/1, z / 2, rounds the agent took part in). The sum of n
// honest agents' noises has stddev sqrt(n) z S, i.e. a central noise
// multiplier of z sqrt(n) on the sum if all n are honest.
//
// Caveats. (1) The noise is reproducible from its seed (so a run can be
// replayed); the DP guarantee holds only while the seed stays secret from
// whoever sees the result, and std::mt19937_64 is not a cryptographic
// generator. Derive the seed from a secret base seed (MixSeed({secret,
// round, ...})), and for deployments against strong adversaries use a fresh
// secret seed from the OS each round. (2) Like every floating-point
// implementation of the Gaussian mechanism (Mironov, CCS 2012), the noise's
// low-order bits are not exactly Gaussian; the guarantee is the idealized
// one. (3) Only float32 tensors are clipped and noised; int64 tensors (e.g.
// BatchNorm counters) pass through and are not covered by the guarantee, so
// a private run should use a model without them or drop them from updates.
//
// Thread-safety: the functions hold no state; calls on different
// ModelStates may run concurrently.
#ifndef FEDGE_COMMON_DP_H_
#define FEDGE_COMMON_DP_H_

#include <cstdint>

#include "absl/status/status.h"
#include "common/robust_aggregation.h"  // L2Norm: one home for the norm.
#include "common/tensor_buffer.h"

namespace fedge {

struct DpFedAvgOptions {
  // S: bound on the L2 norm of one agent's update over all its float32
  // tensors, in model-parameter units. > 0 and finite.
  double clip_norm = 1.0;
  // z: noise stddev divided by clip_norm (the sensitivity). > 0 and finite.
  double noise_multiplier = 1.0;
  // false: central DP, the coordinator noises the aggregate; true: local DP,
  // every agent noises its own clipped update. See the file comment.
  bool local = false;
  // The delta of the (epsilon, delta) guarantee reported, in (0, 1).
  double delta = 1e-5;
  // Budget: no round may take epsilon above it (0 = no budget). >= 0.
  double max_epsilon = 0;
  // Secret base seed of the noise; 0 = SecretSeed() at start.
  uint64_t noise_seed = 0;

  // OK, or INVALID_ARGUMENT naming the first field out of range.
  absl::Status Validate() const;
};

// What agents do to their update before upload (the TrainPlan carries
// both): clip it to `clip_norm` (ClipUpdate; 0 = no clipping) and, for
// local DP, add N(0, noise_stddev^2) to every float32 value
// (AddGaussianNoise with `seed`; 0 = no noise). The one function the agent
// and fedge-sim's simulated agents call. clip_norm and noise_stddev >= 0
// and finite (checked).
void PrivatizeUpdate(ModelState& delta, double clip_norm, double noise_stddev,
                     uint64_t seed);

// A fresh 64-bit seed from the operating system's entropy source
// (std::random_device, /dev/urandom on Linux), for noise whose seed must
// stay secret.
uint64_t SecretSeed();

// z * S: the noise stddev per coordinate on the SUM of the round's clipped
// updates (central), or on one agent's clipped update (local).
// `options` must be valid (checked).
double NoiseStddev(const DpFedAvgOptions& options);

// z * S / expected_agents: the noise stddev per coordinate on the MEAN of the
// round's clipped updates when it is taken with the fixed denominator
// `expected_agents` (the number of agents sampled per round, q N).
// `options` must be valid and expected_agents >= 1 (checked).
double MeanNoiseStddev(const DpFedAvgOptions& options, int64_t expected_agents);

// The L2 norm of an update is common/robust_aggregation.h's L2Norm (over
// the float32 elements, accumulated in double).

// Scales the float32 tensors of `delta` so their joint L2 norm is at most
// `clip_norm` (unchanged when it already is) and returns the norm before
// clipping. The scale is shrunk by a factor 1 - 2^-20 so that float32
// rounding can never leave the norm above clip_norm. A non-finite norm
// (an Inf or NaN element) zeroes every float32 element, which keeps the
// bound; callers that want to reject such updates instead check CheckFinite
// first. clip_norm > 0 and finite (checked).
double ClipUpdate(ModelState& delta, double clip_norm);

// Adds independent N(0, stddev^2) noise to every float32 element of `x`, in
// tensor order, from DeterministicRng(seed).Normal() (Marsaglia's polar
// method): the same seed and schema give the same noise on every platform.
// stddev >= 0 and finite (checked); 0 leaves `x` unchanged. See the file
// comment on keeping `seed` secret.
void AddGaussianNoise(ModelState& x, double stddev, uint64_t seed);

}  // namespace fedge

#endif  // FEDGE_COMMON_DP_H_

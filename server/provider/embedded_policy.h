// The example policy compiled into the binary (examples/policy.yaml): what
// toolgated serves when no --policy is given.
#ifndef TOOLGATE_SERVER_PROVIDER_EMBEDDED_POLICY_H_
#define TOOLGATE_SERVER_PROVIDER_EMBEDDED_POLICY_H_

namespace toolgate {

extern const char kEmbeddedPolicy[];
inline constexpr char kEmbeddedPolicyName[] = "<embedded examples/policy.yaml>";

}  // namespace toolgate

#endif  // TOOLGATE_SERVER_PROVIDER_EMBEDDED_POLICY_H_

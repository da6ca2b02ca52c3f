#include "net/libcurl.hpp"

#include "runtime/shared_library.hpp"

namespace flare::net {

const LibCurl& libcurl() {
  static const LibCurl api = [] {
    static SharedLibrary lib({"libcurl.so.4", "libcurl-gnutls.so.4"}, "HTTP (libcurl)");
    LibCurl c{};
#define FLARE_CURL_FN(field, name) \
  c.field = lib.function<std::remove_pointer_t<decltype(c.field)>>(#name)
    FLARE_CURL_FN(global_init, curl_global_init);
    FLARE_CURL_FN(version_info, curl_version_info);
    FLARE_CURL_FN(easy_init, curl_easy_init);
    FLARE_CURL_FN(easy_cleanup, curl_easy_cleanup);
    FLARE_CURL_FN(easy_reset, curl_easy_reset);
    FLARE_CURL_FN(easy_setopt, curl_easy_setopt);
    FLARE_CURL_FN(easy_getinfo, curl_easy_getinfo);
    FLARE_CURL_FN(easy_strerror, curl_easy_strerror);
    FLARE_CURL_FN(multi_init, curl_multi_init);
    FLARE_CURL_FN(multi_cleanup, curl_multi_cleanup);
    FLARE_CURL_FN(multi_setopt, curl_multi_setopt);
    FLARE_CURL_FN(multi_add_handle, curl_multi_add_handle);
    FLARE_CURL_FN(multi_remove_handle, curl_multi_remove_handle);
    FLARE_CURL_FN(multi_perform, curl_multi_perform);
    FLARE_CURL_FN(multi_poll, curl_multi_poll);
    FLARE_CURL_FN(multi_info_read, curl_multi_info_read);
    FLARE_CURL_FN(multi_strerror, curl_multi_strerror);
    FLARE_CURL_FN(multi_socket_action, curl_multi_socket_action);
    FLARE_CURL_FN(multi_assign, curl_multi_assign);
    FLARE_CURL_FN(slist_append, curl_slist_append);
    FLARE_CURL_FN(slist_free_all, curl_slist_free_all);
#undef FLARE_CURL_FN
    return c;
  }();
  return api;
}

}  // namespace flare::net

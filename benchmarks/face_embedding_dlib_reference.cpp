// Reference: run dlib's face recognition net on raw 150x150 RGB chips.
#include <dlib/dnn.h>
#include <fstream>
#include <iostream>
using namespace dlib;
template <template <int,template<typename>class,int,typename> class block, int N, template<typename>class BN, typename SUBNET>
using residual = add_prev1<block<N,BN,1,tag1<SUBNET>>>;
template <template <int,template<typename>class,int,typename> class block, int N, template<typename>class BN, typename SUBNET>
using residual_down = add_prev2<avg_pool<2,2,2,2,skip1<tag2<block<N,BN,2,tag1<SUBNET>>>>>>;
template <int N, template <typename> class BN, int stride, typename SUBNET>
using block  = BN<con<N,3,3,1,1,relu<BN<con<N,3,3,stride,stride,SUBNET>>>>>;
template <int N, typename SUBNET> using ares      = relu<residual<block,N,affine,SUBNET>>;
template <int N, typename SUBNET> using ares_down = relu<residual_down<block,N,affine,SUBNET>>;
template <typename SUBNET> using alevel0 = ares_down<256,SUBNET>;
template <typename SUBNET> using alevel1 = ares<256,ares<256,ares_down<256,SUBNET>>>;
template <typename SUBNET> using alevel2 = ares<128,ares<128,ares_down<128,SUBNET>>>;
template <typename SUBNET> using alevel3 = ares<64,ares<64,ares<64,ares_down<64,SUBNET>>>>;
template <typename SUBNET> using alevel4 = ares<32,ares<32,ares<32,SUBNET>>>;
using anet_type = loss_metric<fc_no_bias<128,avg_pool_everything<
                            alevel0<alevel1<alevel2<alevel3<alevel4<
                            max_pool<3,3,2,2,relu<affine<con<32,7,7,2,2,
                            input_rgb_image_sized<150>
                            >>>>>>>>>>>>;
int main(int argc, char** argv) {
    // argv: model.dat chips.u8 (N*150*150*3 RGB) out.f32 (N*128)
    anet_type net;
    deserialize(argv[1]) >> net;
    std::ifstream in(argv[2], std::ios::binary);
    std::vector<matrix<rgb_pixel>> chips;
    std::vector<unsigned char> buf(150*150*3);
    while (in.read((char*)buf.data(), buf.size())) {
        matrix<rgb_pixel> m(150,150);
        for (long r = 0; r < 150; ++r) for (long c = 0; c < 150; ++c) {
            const unsigned char* p = &buf[(r*150+c)*3];
            m(r,c) = rgb_pixel(p[0],p[1],p[2]);
        }
        chips.push_back(m);
    }
    std::vector<matrix<float,0,1>> d = net(chips);
    std::ofstream out(argv[3], std::ios::binary);
    for (auto& v : d) out.write((const char*)&v(0), 128*sizeof(float));
    std::cout << chips.size() << " chips\n";
    return 0;
}
